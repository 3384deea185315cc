"""The `process` kind against real child processes: gone, leaking, steady, port thieves."""

from __future__ import annotations

import os
import re
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


def test_name_and_multiline_pidfile_naming_the_live_process_is_ok(tmp_path: Path) -> None:
    """A daemon matched by its process name, whose pidfile holds its pid on the first
    line followed by more lines (as PostgreSQL's postmaster.pid does), is running."""
    program = marker()[:15]
    with child(SLEEPER, program_name=program) as daemon:
        pidfile = tmp_path / "postmaster.pid"
        pidfile.write_text(f"{daemon.pid}\n/var/lib/data\n1700000000\n5432\n")
        by_name = run_proc(name=program)
        by_pidfile = run_proc(name=program, pidfile=str(pidfile))
    for run in (by_name, by_pidfile):
        finding = only(run, "process.down")
        assert finding.severity is Severity.OK, finding.summary
        assert [p["pid"] for p in finding.evidence["processes"]] == [daemon.pid]


@pytest.mark.parametrize(("content", "state"), [
    ("\u00b2\u00b3\n", "invalid"),      # digits to str.isdigit(), not to int()
    ("fifo", "unreadable"),             # a named pipe would block a plain open()
])
def test_pidfile_garbage_or_a_fifo_is_reported_not_a_failed_check(
        tmp_path: Path, content: str, state: str) -> None:
    """A pidfile holding Unicode superscript digits, or a FIFO where the pidfile should
    be, gives process.down with that pidfile state from every collector, never a
    crashed or timed-out check."""
    pidfile = tmp_path / "svc.pid"
    if content == "fifo":
        os.mkfifo(pidfile)
    else:
        pidfile.write_text(content)
    run = run_components({"svc": {"kind": "process", "pidfile": str(pidfile),
                                  "memory_samples": 3, "memory_interval_s": 0.1,
                                  "port": free_port()}})
    assert [f.summary for f in run.findings if f.symptom == "stackmedic.check.failed"] == []
    finding = only(run, "process.down")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["pidfile_state"] == state


def test_down_remedy_fills_every_step_it_keeps() -> None:
    """process.down for a cmdline selector names the program the pattern starts with
    as the service, and leaves out the pidfile step when no pidfile is configured:
    no step keeps an unfilled `<placeholder>`."""
    token = marker()
    finding = only(run_proc(cmdline=f"gunicorn .*{token}"), "process.down")
    assert finding.evidence["service"] == "gunicorn"
    assert finding.remedy is not None and finding.remedy.steps
    steps = "\n".join(finding.remedy.steps)
    assert "journalctl -u gunicorn" in steps
    assert not re.search(r"<[a-z_]+>", steps), steps
    assert "rm -f" not in steps


def test_passwords_on_matched_command_lines_never_reach_the_output() -> None:
    """A matched `redis-cli -a SECRET` has its password masked in the evidence and in
    every output format, while the rest of its command line is kept."""
    from stackmedic.report import render

    token, canary = marker(), f"canary{uuid.uuid4().hex[:10]}"
    with child(SLEEPER, token, "-a", canary, program_name="redis-cli") as proc:
        run = run_proc(cmdline=f"{token} -a ")
    finding = only(run, "process.down")
    assert finding.severity is Severity.OK
    [listed] = finding.evidence["processes"]
    assert listed["pid"] == proc.pid
    assert listed["cmdline"].endswith("-a ***")
    for fmt in ("json", "markdown", "nagios", "terminal"):
        assert canary not in render(run, fmt), fmt


@pytest.mark.parametrize(("argv", "shown"), [
    (["/usr/bin/mysql", "-uroot", "-pS3cr3t!", "shop"], "/usr/bin/mysql -uroot -p*** shop"),
    (["redis-cli", "-h", "db", "-a", "S3cr3t!", "ping"], "redis-cli -h db -a *** ping"),
    (["sshpass", "-p", "S3cr3t!", "ssh", "host"], "sshpass -p *** ssh host"),
    (["curl", "-u", "bob:S3cr3t!", "http://x"], "curl -u bob:*** http://x"),
    (["gunicorn", "-p", "/run/g.pid", "app:wsgi"], "gunicorn -p /run/g.pid app:wsgi"),
])
def test_command_lines_mask_passwords_given_as_short_options(argv: list[str],
                                                             shown: str) -> None:
    """Passwords passed as short options that do not name them are masked in evidence
    command lines; the same option of another program is left alone."""
    from stackmedic.probes._hostfacts import join_cmdline

    assert join_cmdline(argv) == shown


# A service with one SO_REUSEPORT listening socket per worker (as nginx `reuseport`
# or a prefork server opens them), and an intruder sharing the port the same way.
REUSEPORT_LISTENERS = """
import socket, sys, time
held = []
for _ in range(int(sys.argv[2])):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", int(sys.argv[1])))
    sock.listen()
    held.append(sock)
print("ready", flush=True)
time.sleep(300)
"""


def test_foreign_listener_among_many_own_sockets_is_found() -> None:
    """Another program listening on the port through SO_REUSEPORT is named even when
    the service itself holds far more listening sockets there than evidence lists
    (psutil returns them in no particular order, so a cap before the verdict would
    usually hide the intruder)."""
    token, intruder, port = marker(), marker(), free_port()
    with child(REUSEPORT_LISTENERS, str(port), "1", intruder) as holder, \
            child(REUSEPORT_LISTENERS, str(port), "120", token):
        run = run_proc(cmdline=f"{token}$", port=port)
    finding = only(run, "process.port.conflict")
    assert finding.severity is Severity.CRITICAL, finding.summary
    assert finding.evidence["holder_pid"] == holder.pid
    assert finding.evidence["listener_count"] == 121
    assert len(finding.evidence["listeners"]) <= 10


def test_pidfile_of_a_live_service_short_of_workers_is_never_removed(tmp_path: Path) -> None:
    """With fewer workers than min_count but a pidfile naming the live master, the
    remedy does not offer `rm -f` on that pidfile (it would orphan the running service)."""
    token = marker()
    with child(SLEEPER, token) as master:
        pidfile = tmp_path / "svc.pid"
        pidfile.write_text(f"{master.pid}\n")
        finding = only(run_proc(cmdline=f"{token}$", pidfile=str(pidfile), min_count=2),
                       "process.down")
    assert finding.severity is Severity.WARNING
    assert finding.evidence["pidfile_state"] == "ok"
    assert finding.remedy is not None and finding.remedy.steps
    assert not any("rm -f" in step for step in finding.remedy.steps)
