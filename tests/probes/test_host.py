"""The `host` kind against this machine: full and inode-starved tmpfs mounts, CPU
burners, a process at its fd limit, and real memory/swap/load readings."""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path
from typing import Any

import pytest

from stackmedic.checks import RuleContext, default_thresholds, get_probe
from stackmedic.doctor import Run
from stackmedic.findings import Finding, Severity
from stackmedic.probes.host import HostComponent
from stackmedic.testing import problems, run_components, with_symptom
from stackmedic.thresholds import Thresholds
from tests.probes.helpers_host import child, only, tmpfs

SMALL_TMPFS = "size=1m,nr_inodes=64"
HOST_SYMPTOMS = {"host.disk.full", "host.disk.inodes", "host.memory.pressure",
                 "host.swap.active", "host.cpu.saturated", "host.load.high",
                 "host.fd.exhausted"}


def run_host(thresholds: dict[str, Any] | None = None, **spec: Any) -> Run:
    return run_components({"box": {"kind": "host", "cpu_sample_s": 0.2,
                                   "thresholds": thresholds or {}, **spec}})


def fill(directory: Path, make_files: bool) -> None:
    """Write until the filesystem refuses: one big file, or many empty ones."""
    try:
        if make_files:
            for i in range(10_000):
                (directory / f"f{i}").touch()
        else:
            with open(directory / "blob", "wb") as handle:
                while True:
                    handle.write(b"\xff" * 65536)
                    handle.flush()
    except OSError as err:
        assert err.errno == errno.ENOSPC
    else:
        raise AssertionError("the filesystem never filled up")


def test_full_tmpfs_is_critical_disk_full(tmp_path: Path) -> None:
    """A listed tmpfs written until ENOSPC is critical host.disk.full with default
    thresholds, with its mount point and free space in the evidence and remedy."""
    with tmpfs(tmp_path / "full", SMALL_TMPFS) as mount:
        fill(mount, make_files=False)
        run = run_host(mounts=[str(mount)])
    finding = only(run, "host.disk.full", mountpoint=str(mount))
    assert finding.severity is Severity.CRITICAL
    assert isinstance(finding.observed, float) and finding.observed >= 0.95
    assert finding.evidence["fstype"] == "tmpfs"
    assert finding.evidence["avail_bytes"] < 64 * 1024
    assert finding.remedy is not None
    assert any(str(mount) in step for step in finding.remedy.steps)
    # A tmpfs grows by its size option: no resize2fs of a device named "tmpfs".
    assert any(f"mount -o remount,size=2M {mount}" in step for step in finding.remedy.steps)
    assert not any("resize2fs" in step for step in finding.remedy.steps)
    assert only(run, "host.disk.inodes", mountpoint=str(mount)).severity is Severity.OK


def test_tmpfs_out_of_inodes_is_critical_while_space_is_free(tmp_path: Path) -> None:
    """Empty files until no inode is left give critical host.disk.inodes, while
    host.disk.full stays ok on the same mount."""
    with tmpfs(tmp_path / "inodes", SMALL_TMPFS) as mount:
        fill(mount, make_files=True)
        run = run_host(mounts=[str(mount / "f1")])  # a path on the mount selects it
    inodes = only(run, "host.disk.inodes", mountpoint=str(mount))
    assert inodes.severity is Severity.CRITICAL
    assert inodes.evidence["inodes_free"] == 0
    assert "inodes" in inodes.summary
    assert only(run, "host.disk.full", mountpoint=str(mount)).severity is Severity.OK


def test_unlisted_tmpfs_and_pseudo_filesystems_are_skipped(tmp_path: Path) -> None:
    """Without `mounts:`, a tmpfs and kernel filesystems (proc, sysfs) are not reported."""
    with tmpfs(tmp_path / "quiet", SMALL_TMPFS) as mount:
        fill(mount, make_files=False)
        run = run_host()
    reported = {f.evidence["mountpoint"] for f in with_symptom(run.findings, "host.disk.full")}
    assert reported, "no real mount was reported at all"
    assert str(mount) not in reported
    assert not reported & {"/proc", "/sys", "/dev", "/dev/shm", "/sys/fs/cgroup"}


def test_read_only_mount_is_shown_beside_its_usage(tmp_path: Path) -> None:
    """A listed mount the kernel serves read-only says so in the disk finding."""
    with tmpfs(tmp_path / "ro", "ro,size=64k") as mount:
        finding = only(run_host(mounts=[str(mount)]), "host.disk.full", mountpoint=str(mount))
    assert finding.evidence["readonly"] is True
    assert "read-only" in finding.summary


def test_listed_path_that_does_not_exist_is_fs_missing(tmp_path: Path) -> None:
    """A `mounts:` entry naming a missing path is reported, not silently dropped."""
    finding = only(run_host(mounts=[str(tmp_path / "gone")]), "fs.missing")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["path"] == str(tmp_path / "gone")


def meminfo() -> dict[str, int]:
    fields = (line.split(":") for line in Path("/proc/meminfo").read_text().splitlines())
    return {name: int(value.split()[0]) * 1024 for name, value in fields}


def test_memory_and_load_are_judged_on_real_readings() -> None:
    """With thresholds lowered below the real readings, memory and load warn, and the
    observed values are this machine's MemAvailable ratio and load per core."""
    run = run_host({"host.memory.pressure": {"warning": 1.0},
                    "host.load.high": {"warning": 0.0, "critical": 1e9}})
    memory = only(run, "host.memory.pressure")
    info = meminfo()
    assert memory.severity is Severity.WARNING
    assert memory.observed == pytest.approx(info["MemAvailable"] / info["MemTotal"], abs=0.1)
    assert memory.evidence["top_rss"], "the largest processes should be named"
    load = only(run, "host.load.high")
    assert load.severity is Severity.WARNING
    assert load.observed == pytest.approx(os.getloadavg()[1] / (os.cpu_count() or 1), abs=0.5)
    assert load.remedy is not None and load.remedy.steps


def test_swap_reading_matches_the_kernel() -> None:
    """host.swap.active reports this machine's swap use: ok 'no swap' without swap,
    otherwise the used share /proc/meminfo shows."""
    finding = only(run_host(), "host.swap.active")
    info = meminfo()
    assert finding.evidence["total_bytes"] == info["SwapTotal"]
    if info["SwapTotal"] == 0:
        assert finding.severity is Severity.OK and finding.summary == "no swap configured"
    else:
        used = (info["SwapTotal"] - info["SwapFree"]) / info["SwapTotal"]
        assert finding.observed == pytest.approx(used, abs=0.05)


def rule_findings(check: str, facts: dict[str, Any]) -> list[Finding]:
    """Apply one host rule to recorded facts, with the default thresholds."""
    rule = next(r for r in get_probe("host").rules if r.id == check)
    ctx = RuleContext(check, "box", HostComponent(kind="host"),
                      Thresholds(default_thresholds(), environ={}), frozenset(rule.symptoms))
    return list(rule.func(facts, ctx))


def test_hung_mount_remedy_does_not_touch_the_mount() -> None:
    """A mount whose statfs timed out (a dead NFS server) is unknown, and its remedy
    detaches the mount instead of running `du`/`lsof` on it, which would hang too."""
    facts = {"missing": [], "mounts": [{"mountpoint": "/mnt/nfs", "device": "srv:/export",
                                        "fstype": "nfs4",
                                        "error": "statfs timed out after 4.6s"}]}
    [finding] = rule_findings("host.disk", facts)
    assert finding.severity is Severity.UNKNOWN
    assert finding.remedy is not None
    steps = "\n".join(finding.remedy.steps)
    assert "umount -f -l /mnt/nfs" in steps
    assert "du " not in steps and "lsof" not in steps


SWAP_FACTS: dict[str, Any] = {"window_s": 0.5, "swap_io_bytes_s": 262144.0, "top_rss": [],
                              "swap": {"total_bytes": 4 << 30, "used_bytes": 1 << 28,
                                       "in_bytes": 0, "out_bytes": 0}}


@pytest.mark.parametrize(("used", "moved", "expected"), [
    (1 << 28, 0, Severity.OK),                  # 6 % parked in swap, quiet: harmless
    (1 << 28, 4 << 20, Severity.WARNING),       # 6 % used but 8 MiB/s moving: swapping
    (int(3.5 * (1 << 30)), 0, Severity.CRITICAL),  # 88 % used
])
def test_swap_rule_weighs_share_and_activity(used: int, moved: int,
                                             expected: Severity) -> None:
    """Recorded swap samples: a quiet, lightly used swap is ok; pages moving faster than
    `swap_io_bytes_s` warn whatever the share; a nearly full swap is critical."""
    facts = {**SWAP_FACTS, "swap": {**SWAP_FACTS["swap"], "used_bytes": used,
                                    "in_bytes": moved // 2, "out_bytes": moved // 2}}
    [finding] = rule_findings("host.swap", facts)
    assert finding.severity is expected
    assert ("swapping" in finding.summary) == bool(moved)


BURNER = "print('ready', flush=True)\nwhile True:\n    pass\n"


def test_cpu_burners_saturate_cpu_and_are_named() -> None:
    """One busy-looping child per core makes host.cpu.saturated warn at a lowered
    threshold, and a burner is among the busiest processes in the evidence."""
    with contextlib.ExitStack() as stack:
        pids = {stack.enter_context(child(BURNER)).pid for _ in range(os.cpu_count() or 1)}
        run = run_host({"host.cpu.saturated": {"warning": 0.5, "critical": 1.01}},
                       cpu_sample_s=0.5)
    finding = only(run, "host.cpu.saturated")
    assert finding.severity is Severity.WARNING
    assert isinstance(finding.observed, float) and finding.observed >= 0.5
    assert pids & {p["pid"] for p in finding.evidence["top_cpu"]}
    assert finding.cause is not None


FD_HOG = """
import os, resource
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
print("ready", flush=True)
import time
time.sleep(300)
"""


def test_process_at_its_fd_limit_is_critical_and_named() -> None:
    """A child that lowers RLIMIT_NOFILE to 64 and opens fds until EMFILE is listed with
    its pid, count and limit, and the per-process finding is critical."""
    with child(FD_HOG) as hog:
        run = run_host()
    finding = only(run, "host.fd.exhausted", scope="process")
    assert finding.severity is Severity.CRITICAL
    listed = {p["pid"]: p for p in finding.evidence["processes"]}
    assert hog.pid in listed
    assert listed[hog.pid]["fds"] == listed[hog.pid]["soft_limit"] == 64
    assert finding.remedy is not None
    if finding.evidence["pid"] == hog.pid:  # another process may sit at its limit too
        assert any(f"prlimit --pid {hog.pid} --nofile=65536:65536" in step
                   for step in finding.remedy.steps)
    assert not any("fs.file-max" in step for step in finding.remedy.steps)
    system = only(run, "host.fd.exhausted", scope="system")
    assert isinstance(system.observed, float) and 0 <= system.observed < 1


def test_suggested_fd_limits_never_lower_the_current_ones() -> None:
    """The remedy's LimitNOFILE/prlimit and fs.file-max values are raises: above the
    process's soft limit and the system maximum even when those are already high."""
    facts = {"system": {"allocated": 9_900_000, "unused": 0, "max": 10_000_000},
             "processes": [{"pid": 4242, "name": "api", "cmdline": "api", "fds": 1_000_000,
                            "soft_limit": 1_048_576}],
             "scanned": 1, "capped": False,
             "largest": {"pid": 4242, "name": "api", "cmdline": "api", "fds": 1_000_000,
                         "soft_limit": 1_048_576}}
    system, process = rule_findings("host.fd", facts)
    assert system.remedy is not None and process.remedy is not None
    assert "fs.file-max=20000000" in "\n".join(system.remedy.steps)
    steps = "\n".join(process.remedy.steps)
    assert "--nofile=2097152:2097152" in steps and "LimitNOFILE=2097152" in steps
    assert "fs.file-max" not in steps


def test_system_fd_ratio_stays_visible_against_a_huge_file_max() -> None:
    """With fs.file-max at LONG_MAX (as systemd sets it), the system ratio is ok and
    still a positive number rather than rounded away to zero."""
    facts = {"system": {"allocated": 5000, "unused": 0, "max": 2**63 - 1},
             "processes": [], "scanned": 0, "capped": False, "largest": None}
    [finding] = rule_findings("host.fd", facts)
    assert finding.severity is Severity.OK
    assert isinstance(finding.observed, float) and finding.observed > 0


def test_every_host_remedy_step_is_filled_from_its_evidence() -> None:
    """With every threshold at zero, each host problem's remedy keeps only steps whose
    `{evidence.*}` placeholders its own evidence fills: no `<placeholder>` is left."""
    zero = {"warning": 0.0, "critical": 1e9}
    run = run_host({**dict.fromkeys(HOST_SYMPTOMS, zero),
                    "host.memory.pressure": {"warning": 1.0, "critical": -1.0}},
                   mounts=["/"])
    found = problems(run.findings)
    assert {f.symptom for f in found} >= HOST_SYMPTOMS - {"host.swap.active"}
    for finding in found:
        assert finding.remedy is not None and finding.remedy.steps, finding.symptom
        for step in finding.remedy.steps:
            assert not re.search(r"<[a-z_]+>", step), (finding.symptom, step)


def test_unusable_listed_mount_paths_do_not_hide_the_others(tmp_path: Path) -> None:
    """A `mounts:` entry that is garbage (a NUL byte) gives its own unknown finding,
    while the other listed mount is still judged: the disks check does not fail."""
    bad = str(tmp_path / "bad\x00path")
    run = run_host(mounts=["/", bad])
    assert [f.summary for f in run.findings if f.symptom == "stackmedic.check.failed"] == []
    assert only(run, "host.disk.full", mountpoint=bad).severity is Severity.UNKNOWN
    assert only(run, "host.disk.full", mountpoint="/").observed is not None


def test_healthy_host_yields_only_ok_findings_with_numbers(tmp_path: Path) -> None:
    """With limits no reading can reach, every host check reports ok with its number."""
    never = {"warning": 1e9, "critical": 1e9}
    with tmpfs(tmp_path / "empty", SMALL_TMPFS) as mount:
        run = run_host({"host.memory.pressure": {"warning": -1.0, "critical": -1.0},
                        **dict.fromkeys(HOST_SYMPTOMS - {"host.memory.pressure"}, never)},
                       mounts=[str(mount)])
    assert problems(run.findings) == []
    assert {f.symptom for f in run.findings} == HOST_SYMPTOMS
    assert all(f.observed is not None for f in run.findings)
    assert all(f.cause is None for f in run.findings)
