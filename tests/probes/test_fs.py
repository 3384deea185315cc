"""The `fs` kind on real files: modes, owners, users, old files, each induced for real."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stackmedic.doctor import Run
from stackmedic.findings import Severity
from stackmedic.testing import problems, run_components
from tests.probes.helpers_host import only, tmpfs

NOBODY, NOGROUP = 65534, 65534


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory under /tmp that every user may search (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="stackmedic-fs-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make(path: Path, mode: int, gid: int = 0, directory: bool = False) -> Path:
    path.mkdir() if directory else path.write_text("data")
    os.chown(path, 0, gid)
    path.chmod(mode)
    return path


def run_fs(paths: list[dict[str, Any]] | None = None,
           stale: list[dict[str, Any]] | None = None, **extra: Any) -> Run:
    return run_components({"files": {"kind": "fs", "paths": paths or [], "stale": stale or [],
                                     **extra}})


def kernel_allows(path: Path, flag: str) -> bool:
    """What the kernel says when user nobody tries `test -r/-w/-x` on `path`."""
    return subprocess.run(["runuser", "-u", "nobody", "--", "test", flag, str(path)],
                          check=False).returncode == 0


def test_missing_path_is_critical_fs_missing(open_dir: Path) -> None:
    """A path that does not exist yields a critical fs.missing naming it, and no
    permission verdict."""
    missing = open_dir / "not-there"
    run = run_fs([{"path": str(missing), "must": ["exist", "read"]}])
    finding = only(run, "fs.missing")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["path"] == str(missing)
    assert "does not exist" in finding.summary
    assert finding.remedy is not None and any(str(missing) in s for s in finding.remedy.steps)
    assert [f for f in run.findings if f.symptom == "fs.permission.denied"] == []


def test_file_where_a_directory_is_expected_is_fs_missing(open_dir: Path) -> None:
    """A regular file configured as `type: dir` is reported as the wrong type."""
    target = make(open_dir / "data", 0o644)
    finding = only(run_fs([{"path": str(target), "type": "dir"}]), "fs.missing")
    assert finding.severity is Severity.CRITICAL
    assert "is a file, expected a dir" in finding.summary


def test_owner_only_file_is_denied_to_nobody_with_owner_and_mode(open_dir: Path) -> None:
    """A 0600 root file is unreadable for `nobody`; the finding shows owner, mode,
    user and what was denied, and the kernel agrees."""
    secret = make(open_dir / "secret.conf", 0o600)
    run = run_fs([{"path": str(secret), "must": ["read"], "user": "nobody"}])
    finding = only(run, "fs.permission.denied")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["user"] == "nobody"
    assert (finding.evidence["owner"], finding.evidence["group"]) == ("root", "root")
    assert finding.evidence["mode"] == "0600"
    assert finding.evidence["denied"] == ["read"]
    assert "0600" in finding.summary and "nobody" in finding.summary
    assert finding.remedy is not None
    assert any(f"chown -R nobody: {secret}" in step for step in finding.remedy.steps)
    assert not kernel_allows(secret, "-r")
    again = only(run_fs([{"path": str(secret), "must": ["read"], "user": "nobody"}]),
                 "fs.permission.denied")
    assert again.fingerprint == finding.fingerprint  # same problem, same fingerprint


def test_directory_without_search_permission_blocks_the_path(open_dir: Path) -> None:
    """A readable file inside a 0700 directory is unreachable for `nobody`, and the
    blocking directory is named with its mode."""
    private = make(open_dir / "private", 0o700, directory=True)
    inner = make(private / "app.log", 0o644)
    finding = only(run_fs([{"path": str(inner), "must": ["read"], "user": "nobody"}]),
                   "fs.permission.denied")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["blocking_path"] == str(private)
    assert finding.evidence["blocking_mode"] == "0700"
    assert "denies search" in finding.summary
    assert not kernel_allows(inner, "-r")


@pytest.mark.parametrize(("mode", "gid", "directory"), [
    (0o640, NOGROUP, False), (0o604, 0, False), (0o660, NOGROUP, False),
    (0o600, NOGROUP, False), (0o046, NOBODY, False), (0o755, 0, True), (0o775, NOGROUP, True),
    (0o757, 0, True), (0o750, NOGROUP, True), (0o006, 0, True),
])
def test_verdicts_match_what_the_kernel_allows(open_dir: Path, mode: int, gid: int,
                                               directory: bool) -> None:
    """For files and directories across owner/group/other bits, the computed read and
    write verdicts for `nobody` equal what the kernel answers to `test -r/-w`."""
    target = make(open_dir / "target", mode, gid=gid, directory=directory)
    if mode == 0o046:
        os.chown(target, NOBODY, 0)  # owner bits win even when other bits allow more
    for need, flag in (("read", "-r"), ("write", "-w")):
        run = run_fs([{"path": str(target), "must": [need], "user": "nobody"}])
        verdict = only(run, "fs.permission.denied").severity is Severity.OK
        # test -w on a directory only checks the w bit; creating files there also needs x.
        kernel = kernel_allows(target, flag) and (not directory or kernel_allows(target, "-x"))
        assert verdict == kernel, f"{need} on {oct(mode)} gid {gid}"


def test_group_membership_grants_access(open_dir: Path) -> None:
    """`nobody`'s primary group (nogroup) gets the group bits: read allowed, write not."""
    shared = make(open_dir / "shared.txt", 0o640, gid=NOGROUP)
    run = run_fs([{"path": str(shared), "must": ["read"], "user": "nobody"},
                  {"path": str(shared), "must": ["write"], "user": "nobody"}])
    verdicts = [f for f in run.findings if f.symptom == "fs.permission.denied"]
    assert sorted(f.severity.value for f in verdicts) == ["critical", "ok"]
    denied = next(f for f in verdicts if f.is_problem)
    assert denied.evidence["denied"] == ["write"] and denied.evidence["group"] == "nogroup"


def test_root_bypasses_bits_but_needs_an_x_bit_to_execute(open_dir: Path) -> None:
    """Root may read and write a 0000 file, but not execute a file without any x bit."""
    locked = make(open_dir / "locked", 0o000)
    script = make(open_dir / "script.sh", 0o744)
    plain = make(open_dir / "plain.sh", 0o644)
    run = run_fs([{"path": str(locked), "must": ["read", "write"], "user": "root"},
                  {"path": str(script), "must": ["execute"], "user": "root"},
                  {"path": str(plain), "must": ["execute"], "user": "0"}])
    by_path = {f.evidence["path"]: f for f in run.findings if f.symptom == "fs.permission.denied"}
    assert by_path[str(locked)].severity is Severity.OK
    assert by_path[str(script)].severity is Severity.OK
    assert by_path[str(plain)].severity is Severity.CRITICAL
    assert by_path[str(plain)].evidence["need"] == "x"


def test_without_a_user_the_doctors_own_ids_are_used(open_dir: Path) -> None:
    """With no `user:`, access is evaluated for the running doctor (root here)."""
    locked = make(open_dir / "locked", 0o000)
    finding = only(run_fs([{"path": str(locked), "must": ["read"]}]), "fs.permission.denied")
    assert finding.severity is Severity.OK
    assert finding.evidence["uid"] == os.geteuid()


def test_read_only_mount_leaves_the_permission_verdict_to_the_bits(open_dir: Path) -> None:
    """On a read-only tmpfs, root's write is not a permission problem (the summary
    points at the read-only filesystem instead), while the w bit `nobody` lacks is
    still reported, as a remount alone would not let it write."""
    with tmpfs(open_dir / "ro", "ro,size=64k,mode=0755") as mount:
        run = run_fs([{"path": str(mount), "must": ["write"], "type": "dir", "user": user}
                      for user in ("root", "nobody")])
    root = only(run, "fs.permission.denied", user="root")
    assert root.severity is Severity.OK and "read-only" in root.summary
    nobody = only(run, "fs.permission.denied", user="nobody")
    assert nobody.severity is Severity.CRITICAL
    assert (nobody.evidence["need"], nobody.evidence["who"]) == ("w", "o")
    assert [f.severity for f in run.findings if f.symptom == "fs.readonly"] == \
        [Severity.CRITICAL] * 2


def test_unknown_user_is_unknown_not_ok(open_dir: Path) -> None:
    """A user that does not exist gives an unknown verdict naming the user."""
    target = make(open_dir / "f", 0o644)
    finding = only(run_fs([{"path": str(target), "must": ["read"],
                            "user": "no-such-user-xyz"}]), "fs.permission.denied")
    assert finding.severity is Severity.UNKNOWN
    assert "no-such-user-xyz" in finding.summary


def test_numeric_uid_without_a_passwd_entry_is_still_judged(open_dir: Path) -> None:
    """A bare uid with no passwd entry (a container's arbitrary uid) gets the owner
    bits of its own files and the other bits elsewhere, rather than 'no such user'."""
    uid = 54321
    own = make(open_dir / "own", 0o600)
    os.chown(own, uid, 0)
    other = make(open_dir / "other", 0o600)
    run = run_fs([{"path": str(own), "must": ["read", "write"], "user": str(uid)},
                  {"path": str(other), "must": ["read"], "user": str(uid)}])
    by_path = {f.evidence["path"]: f for f in run.findings if f.symptom == "fs.permission.denied"}
    assert by_path[str(own)].severity is Severity.OK
    assert by_path[str(other)].severity is Severity.CRITICAL
    assert by_path[str(other)].evidence["who"] == "o"


def age(path: Path, days: float) -> None:
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))


def test_old_files_are_counted_with_bytes(open_dir: Path) -> None:
    """Files matching the pattern older than N days are counted (recursively) with
    their bytes; fresh and non-matching files are not."""
    spool = make(open_dir / "spool", 0o755, directory=True)
    (spool / "sub").mkdir()
    sizes = []
    for i, where in enumerate([spool, spool, spool, spool, spool / "sub"]):
        old = where / f"job{i}.tmp"
        old.write_bytes(b"x" * (100 * (i + 1)))
        sizes.append(100 * (i + 1))
        age(old, 10)
    (spool / "fresh.tmp").write_text("new")
    age(spool / "fresh.tmp", 1)
    (spool / "old.log").write_text("log")
    age(spool / "old.log", 30)
    run = run_fs(stale=[{"dir": str(spool), "older_than_days": 7, "pattern": "*.tmp",
                         "warn_files": 3}])
    finding = only(run, "fs.stale.files")
    assert finding.severity is Severity.WARNING
    assert finding.observed == 5 and finding.threshold == 3
    assert finding.evidence["bytes"] == sum(sizes)
    assert finding.evidence["capped"] is None
    assert len(finding.evidence["oldest"]) == 5
    assert all(item["age_days"] >= 10 for item in finding.evidence["oldest"])
    assert finding.remedy is not None
    assert any(f"-mmin +{7 * 1440}" in step for step in finding.remedy.steps)


def test_walk_cap_is_reported(open_dir: Path) -> None:
    """A walk stopped by `max_entries` says so, and its count is a lower bound."""
    spool = make(open_dir / "spool", 0o755, directory=True)
    for i in range(20):
        age(make(spool / f"f{i}", 0o644), 10)
    run = run_fs(stale=[{"dir": str(spool), "older_than_days": 1, "max_entries": 5,
                         "warn_files": 1000}])
    finding = only(run, "fs.stale.files")
    assert finding.evidence["capped"] == "entries"
    assert finding.observed == 5 and finding.evidence["visited"] == 6
    assert "at least" in finding.summary


def test_missing_stale_directory_is_a_warning(open_dir: Path) -> None:
    """A watched directory that does not exist gives a warning fs.missing."""
    finding = only(run_fs(stale=[{"dir": str(open_dir / "nope")}]), "fs.missing")
    assert finding.severity is Severity.WARNING


def test_healthy_paths_and_clean_spool_yield_only_ok(open_dir: Path) -> None:
    """Usable paths and a spool without old files give ok findings, each with a number."""
    data = make(open_dir / "data", 0o775, gid=NOGROUP, directory=True)
    spool = make(open_dir / "spool", 0o755, directory=True)
    (spool / "recent.tmp").write_text("x")
    run = run_fs([{"path": str(data), "must": ["exist", "read", "write"], "type": "dir"}],
                 [{"dir": str(spool), "pattern": "*.tmp"}], user="nobody")
    assert problems(run.findings) == []
    assert sorted(f.symptom for f in run.findings) == [
        "fs.missing", "fs.permission.denied", "fs.readonly", "fs.stale.files"]
    assert all(f.observed is not None for f in run.findings)
    assert only(run, "fs.permission.denied").evidence["user"] == "nobody"


def fix_command(steps: tuple[str, ...], prefix: str) -> list[str]:
    """The inline command (`chmod …`, `setfacl …`) ending the remedy step that starts
    with `prefix`."""
    [step] = [s for s in steps if s.startswith(prefix)]
    return step.split("`")[-2].split()


def run_fix(command: list[str]) -> None:
    """Run a remedy's `chmod`, or its `setfacl -m u:USER:PERMS PATH` the way setfacl
    writes it (the mode's classes plus the named user, the mask their union), as
    setfacl itself may not be installed."""
    if command[0] != "setfacl":
        subprocess.run(command, check=True)
        return
    _flag, entry, path = command[1:]
    _u, user, perms = entry.split(":")
    bits = sum(bit for letter, bit in (("r", 4), ("w", 2), ("x", 1)) if letter in perms)
    mode = Path(path).stat().st_mode
    group = (mode >> 3) & 7
    set_acl(Path(path), (USER_OBJ, (mode >> 6) & 7, ANY),
            (USER, bits, pwd.getpwnam(user).pw_uid), (GROUP_OBJ, group, ANY),
            (MASK, group | bits, ANY), (OTHER, mode & 7, ANY))


@pytest.mark.parametrize(("mode", "owner", "need", "who"), [
    (0o744, 0, "x", "o"),        # other may read bits, but listing also needs x
    (0o046, NOBODY, "rx", "u"),  # the owner bits apply to the owner: group and other r+w
    (0o600, 0, "rx", "o"),
])
def test_remedy_grants_exactly_the_missing_bits_to_the_right_class(
        open_dir: Path, mode: int, owner: int, need: str, who: str) -> None:
    """For a directory `nobody` must read, the finding names the bits it lacks (x for a
    directory's contents too) and the class they apply to, and running the remedy's
    grant (chmod of the owner bits, else an ACL entry for nobody) makes the kernel
    allow the read."""
    target = make(open_dir / "data", mode, directory=True)
    os.chown(target, owner, 0)
    finding = only(run_fs([{"path": str(target), "must": ["read"], "user": "nobody"}]),
                   "fs.permission.denied")
    assert finding.severity is Severity.CRITICAL
    assert (finding.evidence["need"], finding.evidence["who"]) == (need, who)
    assert finding.cause is not None and ("gives its owner" in finding.cause) == (who == "u")
    assert finding.remedy is not None
    command = fix_command(finding.remedy.steps, "Grant exactly the missing bits")
    # An ACL entry for nobody replaces other's bits for nobody: it keeps the r they gave.
    assert command == (["chmod", f"u+{need}", str(target)] if who == "u" else
                       ["setfacl", "-m", "u:nobody:rx", str(target)])
    assert not (kernel_allows(target, "-r") and kernel_allows(target, "-x"))
    run_fix(command)
    assert kernel_allows(target, "-r") and kernel_allows(target, "-x")
    assert only(run_fs([{"path": str(target), "must": ["read"], "user": "nobody"}]),
                "fs.permission.denied").severity is Severity.OK


def test_blocking_directory_remedy_fixes_the_search(open_dir: Path) -> None:
    """A directory owned by `nobody` with mode 0600 blocks nobody's search through the
    owner bits; the remedy's `chmod u+x` on it (not o+x) lets the kernel through, and
    no step refers to bits the path itself lacks."""
    private = make(open_dir / "home", 0o600, directory=True)
    inner = make(private / "app.conf", 0o644)
    os.chown(private, NOBODY, 0)
    finding = only(run_fs([{"path": str(inner), "must": ["read"], "user": "nobody"}]),
                   "fs.permission.denied")
    assert finding.evidence["blocking_who"] == "u"
    assert finding.remedy is not None
    steps = "\n".join(finding.remedy.steps)
    assert "<" not in steps and "chown" not in steps
    command = fix_command(finding.remedy.steps, "A directory on the way")
    assert command == ["chmod", "u+x", str(private)]
    assert not kernel_allows(inner, "-r")
    subprocess.run(command, check=True)
    assert kernel_allows(inner, "-r")


def test_dangling_symlink_says_where_it_points(open_dir: Path) -> None:
    """A configured path that is a symlink to a removed target is fs.missing naming
    the target, not just 'does not exist'."""
    link = open_dir / "current"
    link.symlink_to(open_dir / "releases" / "42")
    finding = only(run_fs([{"path": str(link)}]), "fs.missing")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["dangling_to"] == str(open_dir / "releases" / "42")
    assert "symlink" in finding.summary


def test_garbage_paths_and_users_give_findings_not_failed_checks(open_dir: Path) -> None:
    """A path or user name with a NUL byte (from a bad ${VAR} expansion, say) gives
    unknown findings naming the problem, never a crashed collector."""
    good = make(open_dir / "ok", 0o644)
    run = run_fs([{"path": str(open_dir / "bad\x00name")},
                  {"path": str(good), "must": ["read"], "user": "no\x00body"}],
                 [{"dir": str(open_dir / "spool\x00")}])
    assert [f.summary for f in run.findings if f.symptom == "stackmedic.check.failed"] == []
    assert only(run, "fs.missing", path=str(open_dir / "bad\x00name")).severity \
        is Severity.UNKNOWN
    assert only(run, "fs.permission.denied").severity is Severity.UNKNOWN


ANY = 0xFFFFFFFF  # the id field of entries that name no user or group
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 1, 2, 4, 8, 16, 32


def set_acl(path: Path, *entries: tuple[int, int, int]) -> None:
    """Write an access ACL the way setfacl does (skips where the filesystem has none)."""
    import struct

    raw = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in sorted(entries))
    try:
        os.setxattr(path, "system.posix_acl_access", raw)
    except OSError as err:
        pytest.skip(f"no POSIX ACLs on this filesystem: {err}")


@pytest.mark.parametrize("acl", [
    # named user nobody may read; the mask allows it
    [(USER_OBJ, 6, ANY), (USER, 4, NOBODY), (GROUP_OBJ, 0, ANY), (MASK, 4, ANY), (OTHER, 0, ANY)],
    # named user nobody has rw, but the mask cuts write
    [(USER_OBJ, 6, ANY), (USER, 6, NOBODY), (GROUP_OBJ, 0, ANY), (MASK, 4, ANY), (OTHER, 0, ANY)],
    # nogroup may read; a matching group that lacks w denies write though other has it
    [(USER_OBJ, 6, ANY), (GROUP_OBJ, 0, ANY), (GROUP, 4, NOGROUP), (MASK, 6, ANY),
     (OTHER, 6, ANY)],
    # the owning group (nogroup) matches and grants nothing: other's r does not apply
    [(USER_OBJ, 6, ANY), (GROUP_OBJ, 0, ANY), (USER, 0, 0), (MASK, 7, ANY), (OTHER, 4, ANY)],
])
def test_posix_acl_verdicts_match_the_kernel(open_dir: Path,
                                             acl: list[tuple[int, int, int]]) -> None:
    """With a POSIX ACL on the file (named users and groups, a mask, a matching group
    that grants nothing), read and write verdicts for `nobody` equal the kernel's."""
    target = make(open_dir / "acl.conf", 0o600, gid=NOGROUP)
    set_acl(target, *acl)
    for need, flag in (("read", "-r"), ("write", "-w")):
        run = run_fs([{"path": str(target), "must": [need], "user": "nobody"}])
        finding = only(run, "fs.permission.denied")
        assert (finding.severity is Severity.OK) == kernel_allows(target, flag), need
        if finding.is_problem:
            assert finding.remedy is not None
            assert any(f"setfacl -m {finding.evidence['acl_grant']} {target}" in step
                       for step in finding.remedy.steps)
            assert finding.evidence["need"] in finding.evidence["acl_grant"].split(":")[2]


def test_acl_on_a_parent_directory_grants_search(open_dir: Path) -> None:
    """A 0700 root directory whose ACL gives `nobody` search (u:nobody:x) does not
    block the path below it, as the kernel agrees."""
    private = make(open_dir / "private", 0o700, directory=True)
    inner = make(private / "app.log", 0o644)
    set_acl(private, (USER_OBJ, 7, ANY), (USER, 1, NOBODY), (GROUP_OBJ, 0, ANY),
            (MASK, 1, ANY), (OTHER, 0, ANY))
    finding = only(run_fs([{"path": str(inner), "must": ["read"], "user": "nobody"}]),
                   "fs.permission.denied")
    assert kernel_allows(inner, "-r")
    assert finding.severity is Severity.OK, finding.summary


def test_stale_walk_stays_on_one_filesystem(open_dir: Path) -> None:
    """Old files on a volume mounted inside the watched directory are not counted, as
    the runbook's `find -xdev` would not list them either; the skip is counted."""
    spool = make(open_dir / "spool", 0o755, directory=True)
    age(make(spool / "job.tmp", 0o644), 10)
    with tmpfs(spool / "volume", "size=64k") as volume:
        for i in range(3):
            age(make(volume / f"other{i}.tmp", 0o644), 10)
        run = run_fs(stale=[{"dir": str(spool), "older_than_days": 1}])
    finding = only(run, "fs.stale.files")
    assert finding.observed == 1
    assert finding.evidence["other_fs"] == 1


def test_stale_dir_that_is_a_file_is_unknown_not_missing(open_dir: Path) -> None:
    """A `stale` entry naming a regular file is not reported as missing: the verdict
    is unknown and says it is not a directory."""
    target = make(open_dir / "spool", 0o644)
    finding = only(run_fs(stale=[{"dir": str(target)}]), "fs.stale.files")
    assert finding.severity is Severity.UNKNOWN
    assert "not a directory" in finding.summary
