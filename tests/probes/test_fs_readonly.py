"""`fs.readonly` on real mounts: a tmpfs mounted or remounted read-only, and an ext4
image the kernel itself turns read-only after an error (errors=remount-ro)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackmedic.doctor import Run
from stackmedic.findings import Severity
from stackmedic.probes._mounts import fstab_options
from stackmedic.testing import problems, run_components
from tests.probes.helpers_host import only, tmpfs


def run_writer(path: Path, fstab: Path, **check: object) -> Run:
    """The doctor over one fs component that must read and write `path`."""
    return run_components({"files": {"kind": "fs", "fstab": str(fstab), "paths": [
        {"path": str(path), "must": ["read", "write"], **check}]}})


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def test_read_only_mount_is_fs_readonly_not_permission_denied(tmp_path: Path) -> None:
    """A directory on a tmpfs mounted `ro` (as fstab says) gives a critical fs.readonly
    with the mount's evidence and a remedy that fixes the mount, not chmod; the
    permission verdict, which the bits allow, is not a problem."""
    where = tmp_path / "ro"
    fstab = tmp_path / "fstab"
    fstab.write_text(f"# a comment\ntmpfs {where} tmpfs ro,size=1m 0 0\n")
    with tmpfs(where, "ro,size=1m") as mount:
        run = run_writer(mount, fstab, type="dir")
    finding = only(run, "fs.readonly")
    assert finding.severity is Severity.CRITICAL
    assert {key: finding.evidence[key] for key in ("path", "mountpoint", "fstype", "device")} \
        == {"path": str(mount), "mountpoint": str(mount), "fstype": "tmpfs", "device": "tmpfs"}
    assert "ro" in finding.evidence["options"].split(",")
    assert finding.evidence["fstab_options"] == "ro,size=1m"
    assert finding.evidence["remounted"] is False
    assert str(mount) in finding.summary and "read-only" in finding.summary
    assert finding.cause is not None and "fstab" in finding.cause
    assert finding.remedy is not None
    steps = "\n".join(finding.remedy.steps)
    assert str(fstab) in steps and "<" not in steps
    assert "remount,rw" not in steps and "chmod" not in steps
    assert [f.symptom for f in problems(run.findings)] == ["fs.readonly"]


def test_read_write_mount_is_ok(tmp_path: Path) -> None:
    """A path on a read-write tmpfs gives an ok fs.readonly naming its mount (a mount
    point with a space, which the mount table escapes as \\040), and no problem at all."""
    with tmpfs(tmp_path / "rw mount", "size=1m") as mount:
        (mount / "data").mkdir()
        run = run_writer(mount / "data", tmp_path / "no-fstab")
    finding = only(run, "fs.readonly")
    assert finding.severity is Severity.OK
    assert finding.evidence["mountpoint"] == str(mount)
    assert problems(run.findings) == []


def test_remount_read_only_against_fstab_rw_is_reported_as_remounted(tmp_path: Path) -> None:
    """A tmpfs that fstab mounts rw, remounted ro at run time, is reported as remounted
    (with the kernel log to read first); running the remedy's remount makes it ok."""
    where = tmp_path / "data"
    fstab = tmp_path / "fstab"
    fstab.write_text(f"tmpfs\t{where}/  tmpfs  defaults,size=1m  0 0\n")
    with tmpfs(where, "rw,size=1m") as mount:
        (mount / "spool").mkdir()
        remount(mount, "ro")
        finding = only(run_writer(mount / "spool", fstab), "fs.readonly")
        assert finding.severity is Severity.CRITICAL
        assert finding.evidence["remounted"] is True
        assert finding.evidence["fstab_options"] == "defaults,size=1m"
        assert finding.cause is not None and "remounted read-only" in finding.cause
        assert finding.remedy is not None
        steps = finding.remedy.steps
        assert any("dmesg" in step for step in steps)
        [command] = [step.split("`")[-2] for step in steps if "remount,rw" in step]
        assert command == f"mount -o remount,rw {mount}"
        subprocess.run(command.split(), check=True)
        again = only(run_writer(mount / "spool", fstab), "fs.readonly")
    assert again.severity is Severity.OK


def test_mount_missing_from_fstab_is_read_only_without_a_verdict_on_why(
        tmp_path: Path) -> None:
    """A read-only mount that fstab does not list (or no fstab at all) is still
    critical; `remounted` is unknown (None) and the evidence says fstab has no entry."""
    with tmpfs(tmp_path / "ro", "ro,size=1m") as mount:
        finding = only(run_writer(mount, tmp_path / "absent-fstab"), "fs.readonly")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["remounted"] is None
    assert finding.evidence["fstab_options"] is None


@contextlib.contextmanager
def ext4_image(where: Path) -> Iterator[tuple[Path, str]]:
    """A small ext4 image mounted through a loop device with errors=remount-ro."""
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is not installed")
    image = where.parent / "disk.img"
    with image.open("wb") as handle:
        handle.truncate(8 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    where.mkdir()
    done = subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a loop device here ({done.stderr.strip()})")
    try:
        device = subprocess.run(["findmnt", "-no", "SOURCE", str(where)], check=True,
                                capture_output=True, text=True).stdout.strip()
        yield where, device
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def test_kernel_remount_after_an_ext4_error_is_found(tmp_path: Path) -> None:
    """An ext4 filesystem the kernel makes read-only after an error (triggered through
    /sys/fs/ext4/<dev>/trigger_fs_error) is reported as remounted, with the block device
    to check, though statvfs and access(2) still call it writable on recent kernels."""
    fstab = tmp_path / "fstab"
    with ext4_image(tmp_path / "disk") as (mount, device):
        fstab.write_text(f"{device} {mount} ext4 defaults,errors=remount-ro 0 2\n")
        (mount / "data").mkdir()
        trigger = Path("/sys/fs/ext4") / Path(device).name / "trigger_fs_error"
        if not trigger.exists():
            pytest.skip(f"{trigger} is missing: the kernel cannot be made to fail ext4")
        trigger.write_text("1")
        with pytest.raises(OSError, match="Read-only file system"):
            (mount / "data" / "probe").write_text("x")
        finding = only(run_writer(mount / "data", fstab), "fs.readonly")
        # The same filesystem seen through a read-only bind mount (a container's `:ro`
        # volume) still shows the kernel's mark, not just the bind's `ro`.
        with bind_read_only(mount, tmp_path / "view") as view:
            seen = only(run_writer(view / "data", fstab), "fs.readonly")
    assert finding.severity is Severity.CRITICAL
    assert (finding.evidence["device"], finding.evidence["fstype"]) == (device, "ext4")
    assert finding.evidence["remounted"] is True
    assert finding.cause is not None and "kernel" in finding.cause
    assert seen.evidence["kernel_readonly"] is True
    for remedy in (finding.remedy, seen.remedy):
        assert remedy is not None
        assert any(f"fsck -f {device}" in step for step in remedy.steps)
        # ext4 refuses it on Linux 6.x; older kernels would write on the damage.
        assert not any("remount,rw" in step for step in remedy.steps)


@contextlib.contextmanager
def bind_read_only(source: Path, where: Path) -> Iterator[Path]:
    """`source` bound read-only at `where` (the mount's own flag, not the filesystem's)."""
    where.mkdir()
    subprocess.run(["mount", "--bind", str(source), str(where)], check=True)
    try:
        remount(where, "bind,ro")
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_mount_stacked_over_a_directory_hides_the_mounts_below(tmp_path: Path) -> None:
    """A read-only tmpfs mounted over a directory that has a writable tmpfs mounted
    below it: the path below now lies on the top one (writes fail), though the hidden
    mount, still in the table, has the longer mount point."""
    where = tmp_path / "x"
    with tmpfs(where, "size=1m"), tmpfs(where / "sub", "size=1m"), \
            tmpfs(where, "size=1m") as top:
        (top / "sub").mkdir()
        remount(top, "ro")
        with pytest.raises(OSError, match="Read-only file system"):
            (top / "sub" / "probe").write_text("x")
        finding = only(run_writer(top / "sub", tmp_path / "no-fstab"), "fs.readonly")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["mountpoint"] == str(where)


def test_a_missing_path_on_a_read_only_filesystem_cannot_be_created(tmp_path: Path) -> None:
    """A path that must be written and does not exist yet, under a read-only mount: besides
    fs.missing, fs.readonly says it cannot be created there (fs.missing's `install -d`
    would fail with EROFS); the same path under a writable mount is ok."""
    with tmpfs(tmp_path / "ro", "ro,size=1m") as read_only, \
            tmpfs(tmp_path / "rw", "size=1m") as writable:
        run = run_writer(read_only / "spool" / "in", tmp_path / "no-fstab")
        fine = run_writer(writable / "spool", tmp_path / "no-fstab")
    finding = only(run, "fs.readonly")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["create_in"] == str(read_only)
    assert finding.evidence["mountpoint"] == str(read_only)
    assert "does not exist" in finding.summary
    assert sorted(f.symptom for f in problems(run.findings)) == ["fs.missing", "fs.readonly"]
    assert only(run, "fs.missing").explained_by == (finding.fingerprint,)
    assert finding.root_cause
    assert only(fine, "fs.readonly").severity is Severity.OK


def test_fstab_lines_are_read_as_mount_does(tmp_path: Path) -> None:
    """Comments, UUID=/LABEL= sources, swap, bind entries, an escaped mount point, a
    trailing slash, and a line that stops after the type (options `defaults`)."""
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# <file system> <mount point> <type> <options> <dump> <pass>\n"
        "UUID=0a1b / ext4 errors=remount-ro 0 1\n"
        "  # an indented comment /srv ext4 ro 0 0\n"
        "LABEL=data /srv/my\\040data/ xfs ro,noatime 0 2\n"
        "/swapfile none swap sw 0 0\n"
        "/srv/my\\040data /var/www none bind,ro 0 0\n"
        "/dev/sdb1 /backup ext4\n")
    assert fstab_options(str(fstab)) == {
        "/": "errors=remount-ro", "/srv/my data": "ro,noatime", "none": "sw",
        "/var/www": "bind,ro", "/backup": "defaults"}


def test_a_mount_point_with_a_control_character_is_found(tmp_path: Path) -> None:
    """The mount table leaves \\x1c unescaped in a mount point: its line is still one
    mount, so a path on that read-only mount is not taken for its writable parent's."""
    with tmpfs(tmp_path / "ro\x1cmount", "ro,size=1m") as mount:
        finding = only(run_writer(mount, tmp_path / "no-fstab"), "fs.readonly")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["mountpoint"] == str(mount)
