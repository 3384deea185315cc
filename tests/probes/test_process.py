"""The `process` kind against real child processes: gone, leaking, steady, port thieves."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from stackmedic.checks import RuleContext, default_thresholds, get_probe
from stackmedic.doctor import Run
from stackmedic.findings import Finding, Severity
from stackmedic.probes.process import ProcessComponent, fit_growth
from stackmedic.testing import problems, run_components
from stackmedic.thresholds import Thresholds
from tests.fixtures.ports import free_port
from tests.probes.helpers_host import child, only

SLEEPER = "import sys, time\nprint('ready', flush=True)\ntime.sleep(300)\n"
LISTENER = """
import socket, sys, time
sock = socket.socket()
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
print("ready", flush=True)
time.sleep(300)
"""
# Touches 256 KiB of fresh memory every 20 ms (about 12 MiB/s), up to 256 MiB.
GROWER = """
import time
held = []
print("ready", flush=True)
while len(held) < 1024:
    held.append(b"\\x01" * 262144)
    time.sleep(0.02)
time.sleep(300)
"""
# Touches 32 MiB once, then holds it unchanged.
STEADY = """
import time
held = b"\\x01" * (32 << 20)
print("ready", flush=True)
time.sleep(300)
"""


def marker() -> str:
    """A token unique to one test, put on children's command lines to match them."""
    return f"stackmedic-test-{uuid.uuid4().hex[:12]}"


def run_proc(**spec: Any) -> Run:
    return run_components({"svc": {"kind": "process", "memory_samples": 0, **spec}})


def test_no_process_by_that_name_is_critical_down() -> None:
    """A name no process has gives critical process.down with count 0 and a remedy."""
    name = marker()[:15]
    finding = only(run_proc(name=name), "process.down")
    assert finding.severity is Severity.CRITICAL
    assert finding.observed == 0 and finding.threshold == 1
    assert name in finding.summary
    assert finding.remedy is not None
    assert any(f"journalctl -u {name}" in step for step in finding.remedy.steps)


def test_pidfile_naming_a_dead_pid_says_so(tmp_path: Path) -> None:
    """A pidfile left behind by an exited process is reported as naming a dead pid."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(f"{gone.pid}\n")
    finding = only(run_proc(pidfile=str(pidfile)), "process.down")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["pidfile_state"] == "dead"
    assert f"pid {gone.pid}, which is not running" in finding.summary
    assert finding.remedy is not None
    assert any(f"rm -f {pidfile}" in step for step in finding.remedy.steps)


@pytest.mark.parametrize(("content", "state"), [
    (None, "missing"), ("garbage\n", "invalid"), (..., "unreadable")])
def test_missing_unreadable_or_garbled_pidfile_is_named(tmp_path: Path, content: object,
                                                        state: str) -> None:
    """A pidfile that does not exist, cannot be read (here: a directory even root cannot
    read as a file), or holds no pid, is reported with that state."""
    pidfile = tmp_path / "svc.pid"
    if content is ...:
        pidfile.mkdir()
    elif isinstance(content, str):
        pidfile.write_text(content)
    finding = only(run_proc(pidfile=str(pidfile)), "process.down")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["pidfile_state"] == state


def test_pidfile_pid_reused_by_another_program_is_down(tmp_path: Path) -> None:
    """A pidfile whose live pid runs something other than the named program is down
    ('mismatch'), and the summary shows what runs there now."""
    token = marker()
    with child(SLEEPER, token) as other:
        pidfile = tmp_path / "nginx.pid"
        pidfile.write_text(str(other.pid))
        run = run_proc(pidfile=str(pidfile), name="nginx")
    finding = only(run, "process.down")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["pidfile_state"] == "mismatch"
    assert token in finding.summary


def test_min_count_counts_matching_processes() -> None:
    """Two children matched by a cmdline pattern satisfy min_count 2 but warn at 3."""
    token = marker()
    with child(SLEEPER, token) as first, child(SLEEPER, token) as second:
        enough = run_proc(cmdline=f"{token}$", min_count=2)
        short = run_proc(cmdline=f"{token}$", min_count=3)
    ok = only(enough, "process.down")
    assert ok.severity is Severity.OK and ok.observed == 2
    assert {p["pid"] for p in ok.evidence["processes"]} == {first.pid, second.pid}
    warn = only(short, "process.down")
    assert warn.severity is Severity.WARNING and warn.observed == 2


def test_steadily_growing_process_is_flagged_with_its_rate() -> None:
    """A child touching 256 KiB every 20 ms is flagged as process.memory.growth with a
    positive rate in bytes/s and MiB/min."""
    token = marker()
    with child(GROWER, token) as grower:
        run = run_proc(cmdline=token, memory_samples=6, memory_interval_s=0.2)
    finding = only(run, "process.memory.growth")
    assert finding.severity in (Severity.WARNING, Severity.CRITICAL)
    assert finding.evidence["pid"] == grower.pid
    assert finding.evidence["rate_bytes_s"] > 64 * 1024
    assert finding.evidence["rate_mib_min"] > 0
    assert finding.evidence["last_rss"] > finding.evidence["first_rss"]
    assert finding.cause is not None and "leak" in finding.cause


def test_steady_process_is_not_flagged() -> None:
    """A child that allocated once and then idles is not reported as growing."""
    token = marker()
    with child(STEADY, token):
        run = run_proc(cmdline=token, memory_samples=6, memory_interval_s=0.2)
    finding = only(run, "process.memory.growth")
    assert finding.severity is Severity.OK
    assert finding.evidence["last_rss"] >= 32 << 20


def series(values: list[int]) -> list[list[float]]:
    return [[i * 1.0, float(v)] for i, v in enumerate(values)]


def growth_verdict(values: list[int]) -> Finding:
    """The memory rule's verdict on recorded RSS samples (one per second)."""
    rule = next(r for r in get_probe("process").rules if r.id == "process.memory")
    ctx = RuleContext(rule.id, "svc", ProcessComponent(kind="process", name="x"),
                      Thresholds(default_thresholds(), environ={}), frozenset(rule.symptoms))
    facts = {"interval_s": 1.0, "requested": len(values), "truncated": False,
             "processes": [{"pid": 1, "name": "x", "cmdline": "x", "samples": series(values)}]}
    [finding] = rule.func(facts, ctx)
    return finding


MIB = 1 << 20


@pytest.mark.parametrize(("values", "flagged"), [
    ([100 * MIB + i * MIB for i in range(8)], True),                 # clean leak, 1 MiB/s
    ([100 * MIB, 100 * MIB, 100 * MIB, 108 * MIB, 108 * MIB, 108 * MIB], False),  # one step
    ([100 * MIB + (3 * MIB if i % 2 else 0) + i * 100_000 for i in range(8)], False),  # noise
    ([100 * MIB - i * MIB for i in range(8)], False),                # shrinking
])
def test_growth_needs_a_good_fit_and_mostly_rising_steps(values: list[int],
                                                         flagged: bool) -> None:
    """Recorded RSS series: a steady climb is flagged; a single allocation step, noise
    around a slow drift, and shrinking memory are not."""
    finding = growth_verdict(values)
    assert finding.is_problem == flagged, (finding.summary, fit_growth(series(values)))


def test_port_held_by_another_process_names_the_holder() -> None:
    """When another process listens on the service's port, process.port.conflict is
    critical and names the holder's pid and command line."""
    ours, theirs, port = marker(), marker(), free_port()
    with child(SLEEPER, ours), child(LISTENER, str(port), theirs) as holder:
        run = run_proc(cmdline=ours, port=port)
    finding = only(run, "process.port.conflict")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["holder_pid"] == holder.pid
    assert theirs in finding.evidence["holder_cmdline"]
    assert f"pid {holder.pid}" in finding.summary
    assert finding.remedy is not None
    assert any(f"kill -TERM {holder.pid}" in step for step in finding.remedy.steps)


def test_nothing_listening_is_not_a_conflict() -> None:
    """A free port is not a conflict: the finding is ok and says nothing listens."""
    token = marker()
    with child(SLEEPER, token):
        run = run_proc(cmdline=token, port=free_port())
    finding = only(run, "process.port.conflict")
    assert finding.severity is Severity.OK
    assert "not listened on" in finding.summary


# The service listens through a child it spawned, as a master/worker server does; the
# worker's command line does not match the service's pattern, only its ancestry does.
SPAWNING_LISTENER = """
import socket, subprocess, sys, time
if sys.argv[-1] == "worker":
    sock = socket.socket()
    sock.bind(("127.0.0.1", int(sys.argv[1])))
    sock.listen()
else:
    worker = subprocess.Popen([sys.executable, __file__, sys.argv[1], "worker"],
                              stdout=subprocess.PIPE, text=True)
    worker.stdout.readline()
print("ready", flush=True)
time.sleep(300)
"""


def test_healthy_service_yields_only_ok_findings() -> None:
    """A running service whose own child holds its port and whose memory is steady
    gives ok process.down, process.memory.growth and process.port.conflict."""
    token, port = marker(), free_port()
    with child(SPAWNING_LISTENER, str(port), token) as master:
        run = run_components({"svc": {"kind": "process", "cmdline": f"{token}$", "port": port,
                                      "memory_samples": 4, "memory_interval_s": 0.1}})
        for worker in psutil.Process(master.pid).children():
            worker.kill()  # it would otherwise outlive its killed master
    assert problems(run.findings) == [], [f.summary for f in run.findings]
    assert sorted(f.symptom for f in run.findings) == [
        "process.down", "process.memory.growth", "process.port.conflict"]
    assert all(f.observed is not None for f in run.findings)
    assert "held by the expected process" in only(run, "process.port.conflict").summary
