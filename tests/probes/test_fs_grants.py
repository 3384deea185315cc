"""fs.permission.denied's remedy grants the service's user alone before any class."""

from __future__ import annotations

import stat
from pathlib import Path

from stackmedic.findings import Severity
from tests.probes.helpers_host import only
from tests.probes.test_fs import fix_command, kernel_allows, make, open_dir, run_fix, run_fs

__all__ = ["open_dir"]  # the fixture, imported for these tests


def test_an_uploads_directory_is_granted_to_the_user_not_made_world_writable(
        open_dir: Path) -> None:
    """A 0755 root directory `nobody` must write: the first step is an ACL entry for
    nobody (rwx: it replaces other's r-x for nobody), which lets the kernel allow the
    write while other keeps r-x; `chmod o+w` comes last and says it makes the
    directory world-writable."""
    uploads = make(open_dir / "uploads", 0o755, directory=True)
    finding = only(run_fs([{"path": str(uploads), "must": ["write"], "user": "nobody"}]),
                   "fs.permission.denied")
    assert finding.severity is Severity.CRITICAL and finding.remedy is not None
    steps = finding.remedy.steps
    assert fix_command(steps, steps[0][:20]) == ["setfacl", "-m", "u:nobody:rwx", str(uploads)]
    [world] = [s for s in steps if "chmod o+w" in s]
    assert world == steps[-1] and "world-writable" in world
    assert not kernel_allows(uploads, "-w")
    run_fix(fix_command(steps, steps[0][:20]))
    assert kernel_allows(uploads, "-w")
    assert stat.S_IMODE(uploads.stat().st_mode) & 0o007 == 0o005


def test_a_blocking_directory_is_opened_to_the_user_alone(open_dir: Path) -> None:
    """A 0700 root directory above the path blocks nobody through the other bits: the
    first step grants nobody search there by ACL, and the kernel then lets it read."""
    private = make(open_dir / "private", 0o700, directory=True)
    inner = make(private / "app.conf", 0o644)
    finding = only(run_fs([{"path": str(inner), "must": ["read"], "user": "nobody"}]),
                   "fs.permission.denied")
    assert finding.remedy is not None
    first = fix_command(finding.remedy.steps, finding.remedy.steps[0][:20])
    assert first == ["setfacl", "-m", "u:nobody:x", str(private)]
    assert not kernel_allows(inner, "-r")
    run_fix(first)
    assert kernel_allows(inner, "-r")
    assert stat.S_IMODE(private.stat().st_mode) & 0o007 == 0
