"""The `fs` component kind: paths a service needs, and directories that fill up.

    {kind: fs, user: www-data,
     paths: [{path: /var/lib/app, must: [exist, read, write], type: dir}],
     stale: [{dir: /var/spool/x, older_than_days: 7, pattern: "*.tmp", warn_files: 100}]}

`paths` reports `fs.missing`, `fs.permission.denied` and `fs.readonly`. Access is
computed the way the kernel decides it for the configured user: owner, else group (the
user's primary and supplementary groups), else other bits; search (x) on every
directory on the way; root reads and writes anything and executes what has any x bit.
A POSIX access ACL (`setfacl -m u:www-data:r`, read from
the `system.posix_acl_access` attribute) is evaluated as the kernel's
posix_acl_permission() does, on the path and on the directories above it. Without
`user:` the verdict is for the doctor's own effective ids.

A read-only filesystem is not a permission problem, and chmod cannot fix it: a path
that must be written on one is `fs.readonly`, which names the mount (from
/proc/self/mountinfo, see _mounts.py) and compares it with fstab to tell a mount
configured `ro` from one remounted read-only at run time, usually by the kernel after
I/O errors.

`stale` counts files older than N days (count and bytes, the oldest named) with a
walk bounded in entries and time; a bounded walk says so and its counts are then
lower bounds.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stackmedic.checks import CollectContext, Facts, Probe, RuleContext
from stackmedic.config import ComponentBase
from stackmedic.findings import Finding, Severity
from stackmedic.probes._access import allowed, existing_ancestor, stat_facts, user_facts
from stackmedic.probes._hostfacts import EVIDENCE_CAP, applicable_remedy, human_bytes
from stackmedic.probes._mounts import fstab_options, holding, mount_table
from stackmedic.thresholds import Threshold

Access = Literal["exist", "read", "write", "execute"]
_LETTER = {"read": "r", "write": "w", "execute": "x"}  # as chmod spells them


class PathCheck(BaseModel):
    """One path the service needs: `{path: /var/lib/app, must: [read, write], type: dir}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    must: list[Access] = Field(default_factory=lambda: list[Access](["exist"]))
    user: str | None = Field(None, description="user (name or uid) to evaluate access for")
    type: Literal["file", "dir", "any"] = "any"


class StaleCheck(BaseModel):
    """A directory where old files pile up: `{dir: /var/spool/x, older_than_days: 7}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dir: str
    older_than_days: float = Field(7, gt=0, allow_inf_nan=False)
    pattern: str = Field("*", description="shell pattern matched against file names")
    recursive: bool = Field(True, description=(
        "descend into subdirectories on the same filesystem (as `find -xdev`)"))
    warn_files: int | None = Field(None, ge=1, description="overrides the warning threshold")
    crit_files: int | None = Field(None, ge=1, description="overrides the critical threshold")
    max_entries: int = Field(100_000, ge=1, description="directory entries visited at most")


class FsComponent(ComponentBase):
    """A stack-file entry: paths that must be usable and directories to keep clean."""

    user: str | None = Field(None, description="default user for `paths` (else the doctor's)")
    fstab: str = Field("/etc/fstab", description=(
        "fstab that says how each mount is meant to be mounted (the host's, such as "
        "/host/etc/fstab, when stackmedic runs in a container)"))
    paths: list[PathCheck] = Field(default_factory=list)
    stale: list[StaleCheck] = Field(default_factory=list)


probe = Probe("fs", FsComponent, description="files and directories a service needs")


# --- collectors ---------------------------------------------------------------------

@probe.collector("paths", timeout=5.0)
def paths_collector(component: FsComponent, ctx: CollectContext) -> Facts | None:
    """stat of each path and of every directory above it, who the user is, and the
    mount holding the path with what fstab says about it."""
    if not component.paths:
        return None
    items = [{"path": check.path, "must": list(check.must), "type": check.type,
              "user": user_facts(check.user or component.user), **stat_facts(check.path)}
             for check in component.paths]
    mounts = _mount_facts(component.fstab)
    for item in items:
        if item["exists"]:
            item["mount"] = mounts(item["real"], item["dev"])
        elif item["exists"] is False and "write" in item["must"] and \
                (above := existing_ancestor(item["path"])) is not None:
            # Creating it (fs.missing's remedy) needs a writable filesystem too.
            item["mount"] = mounts(above["real"], above["dev"])
            item["create_in"] = above["path"]
    return {"paths": items}


def _mount_facts(fstab: str) -> Callable[[str, str], dict[str, Any]]:
    """A lookup: real path and its device → its mount's facts, or the error that hid them."""
    try:
        table = mount_table()
    except OSError as err:
        error = f"cannot read the mount table: {err.strerror or err}"
        return lambda _real, _dev: {"error": error}
    configured: dict[str, str] = {}  # no fstab at all (a container): nothing configured
    fstab_error = None
    try:
        configured = fstab_options(fstab)
    except FileNotFoundError:
        pass
    except OSError as err:
        fstab_error = err.strerror or str(err)

    def lookup(real: str, dev: str) -> dict[str, Any]:
        mount = holding(real, dev, table)
        if mount is None:
            return {"error": f"no mount in {len(table)} mount-table entries holds {real}"}
        facts = {**mount._asdict(), "fstab": fstab,
                 "fstab_options": configured.get(mount.mountpoint)}
        return {**facts, "fstab_error": fstab_error} if fstab_error else facts
    return lookup


@probe.collector("stale", timeout=10.0)
def stale_collector(component: FsComponent, ctx: CollectContext) -> Facts | None:
    """Files older than N days in each `stale` directory, walked within bounds."""
    if not component.stale:
        return None
    now = time.time()
    return {"dirs": [_scan(check, now, time.monotonic() + (ctx.remaining() - 0.3) /
                           (len(component.stale) - index))
                     for index, check in enumerate(component.stale)]}


def _scan(check: StaleCheck, now: float, deadline: float) -> dict[str, Any]:
    """Count and size of old matching files under `check.dir`, oldest first in evidence."""
    import fnmatch
    import heapq

    cutoff = now - check.older_than_days * 86400
    facts: dict[str, Any] = {**check.model_dump(), "exists": False, "count": 0, "bytes": 0,
                             "visited": 0, "unreadable": 0, "other_fs": 0, "capped": None}
    try:
        top = Path(check.dir).stat()
        facts["exists"] = stat.S_ISDIR(top.st_mode) or None
        if not facts["exists"]:
            facts["error"] = "not a directory"
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as err:  # no permission to reach it; a NUL in the path
        facts.update(exists=None, error=getattr(err, "strerror", None) or str(err))
    oldest: list[tuple[float, str, int]] = []  # (-mtime, path, size): a heap of the oldest
    stack = [check.dir] if facts["exists"] else []
    while stack and facts["capped"] is None:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            facts["unreadable"] += 1
            continue
        with entries:
            for entry in entries:
                facts["visited"] += 1
                if facts["visited"] > check.max_entries or time.monotonic() > deadline:
                    facts["capped"] = "entries" if facts["visited"] > check.max_entries else "time"
                    break
                try:
                    if entry.is_dir(follow_symlinks=False):
                        # Stay on one filesystem, as the runbook's `find -xdev` does: a
                        # volume mounted below is not this directory's backlog.
                        if check.recursive and \
                                entry.stat(follow_symlinks=False).st_dev == top.st_dev:
                            stack.append(entry.path)
                        elif check.recursive:
                            facts["other_fs"] += 1
                        continue
                    if not entry.is_file(follow_symlinks=False) or \
                            not fnmatch.fnmatch(entry.name, check.pattern):
                        continue
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    facts["unreadable"] += 1
                    continue
                if info.st_mtime < cutoff:
                    facts["count"] += 1
                    facts["bytes"] += info.st_size
                    item = (-info.st_mtime, entry.path, info.st_size)
                    if len(oldest) < EVIDENCE_CAP:
                        heapq.heappush(oldest, item)
                    else:
                        heapq.heappushpop(oldest, item)
    facts["oldest"] = [{"path": path, "age_days": round((now + neg) / 86400, 1), "bytes": size}
                       for neg, path, size in sorted(oldest)]
    return facts


# --- rules --------------------------------------------------------------------------

@probe.rule("fs.paths", uses="paths", symptoms=["fs.missing", "fs.permission.denied"])
def paths_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Each path exists with the right type and allows what `must` lists for its user."""
    for item in facts["paths"]:
        yield from _path_findings(item, ctx)


def _path_findings(item: dict[str, Any], ctx: RuleContext) -> Iterator[Finding]:
    path, user = item["path"], item["user"]
    base = {"path": path, "must": item["must"], "user": user["name"]}
    if item["exists"] is None:
        yield ctx.finding("fs.missing", Severity.UNKNOWN,
                          f"cannot stat {path}: {item['error']}", evidence={**base,
                                                                           "error": item["error"]},
                          identity=("path",), cause="the doctor itself lacks permission; "
                                                    "run it as root or as the service user")
        return
    wrong_type = item["exists"] and item["type"] not in ("any", item["kind"])
    if not item["exists"] or wrong_type:
        what = f"is a {item['kind']}, expected a {item['type']}" if wrong_type else \
            f"is a symlink to {item['dangling_to']}, which does not exist" \
            if item.get("dangling_to") else "does not exist"
        yield ctx.finding("fs.missing", Severity.CRITICAL, f"{path} {what}", observed=1,
                          evidence={**base, "expected_type": item["type"],
                                    "actual_type": item.get("kind"),
                                    "dangling_to": item.get("dangling_to")},
                          identity=("path",),
                          cause="not created by the deployment, removed by a cleanup job, or "
                                "the volume holding it is not mounted")
        return
    yield ctx.finding("fs.missing", Severity.OK, f"{path} exists ({item['kind']})", observed=0,
                      evidence={**base, "actual_type": item["kind"]}, identity=("path",))
    if "error" in user:
        yield ctx.finding("fs.permission.denied", Severity.UNKNOWN,
                          f"cannot evaluate access to {path}: no such user {user['name']!r}",
                          evidence=base, identity=("path", "user"))
        return
    yield _access_finding(item, base, ctx)


def _access_finding(item: dict[str, Any], base: dict[str, Any], ctx: RuleContext) -> Finding:
    path, user = item["path"], item["user"]
    mode = f"{item['mode']:04o}"
    evidence = {**base, "uid": user["uid"], "gids": user["gids"], "owner": item["owner"],
                "group": item["group"], "mode": mode, "acl": item["acl"],
                "effective": user.get("effective", False)}
    # Reaching the path needs search permission on every directory above it.
    for parent in item["parents"]:
        if not allowed("execute", parent, user, is_dir=True):
            pmode = f"{parent['mode']:04o}"
            evidence.update(denied=["search"], blocking_path=parent["path"],
                            blocking_owner=parent["owner"], blocking_group=parent["group"],
                            blocking_mode=pmode, blocking_who=_who(parent, user))
            if evidence["blocking_who"] != "u":
                evidence["blocking_acl"] = _acl_entry(parent, user, True, "x")
            return applicable_remedy(ctx.finding(
                "fs.permission.denied", Severity.CRITICAL,
                f"{user['name']} cannot reach {path}: {parent['path']} (mode {pmode} "
                f"{parent['owner']}:{parent['group']}) denies search", observed=1,
                evidence=evidence, identity=("path", "user"),
                cause=f"{parent['path']} lacks the x bit for {user['name']}'s class "
                      f"({_CLASS[evidence['blocking_who']]})"))
    needs = [need for need in item["must"] if need != "exist"]
    is_dir = item["kind"] == "dir"
    denied = [need for need in needs if not _may(need, item, user, is_dir)]
    if not denied:
        what = ", ".join(needs) or "reach"
        summary = f"{user['name']} can {what} {path}"
        if "write" in needs and _readonly_flag(item["mount"]):
            summary = f"{user['name']} has the permissions to {what} {path}, but its " \
                      "filesystem is read-only (fs.readonly)"
        return ctx.finding("fs.permission.denied", Severity.OK, summary, observed=0,
                           evidence=evidence, identity=("path", "user"))
    # The bits to grant: a directory's contents also need search (x) to be listed,
    # opened, created or deleted, so `read` on a 0744 directory lacks x, not r.
    missing = {letter for need in denied for letter in _missing_bits(need, item, user, is_dir)}
    need = "".join(letter for letter in "rwx" if letter in missing)
    evidence.update(denied=denied, need=need, who=_who(item, user))
    evidence.update(_grants(evidence["who"], need, _acl_entry(item, user, is_dir, need)))
    if evidence["who"] == "u":
        cause = f"mode {mode} gives its owner {user['name']} no {need} (the owner bits " \
                "apply to the owner even where group or other bits allow more)"
    else:
        cause = f"mode {mode} {item['owner']}:{item['group']} gives {user['name']} " \
                f"({_CLASS[evidence['who']]}) no {need} (the service runs as another user " \
                "than the files' owner, or a deploy step reset ownership)"
    if item.get("acl_entries"):
        cause += "; the verdict follows the path's POSIX ACL (getfacl -p shows it)"
    return applicable_remedy(ctx.finding(
        "fs.permission.denied", Severity.CRITICAL,
        f"{user['name']} cannot {'/'.join(denied)} {path} "
        f"(mode {mode}, owner {item['owner']}:{item['group']})",
        observed=len(denied), evidence=evidence, identity=("path", "user"), cause=cause))


_CLASS = {"u": "its owner", "g": "in its group", "o": "other"}


def _grants(who: str, need: str, acl_entry: str) -> dict[str, str]:
    """The grants the runbook's steps offer, keyed so that only the fitting ones are
    shown: the owner's own bits; else an ACL entry for the user alone first, the
    group bits, and last the other bits, which open the path to every account (a
    runbook step says so: `o+w` makes a directory world-writable)."""
    if who == "u":
        return {"owner_grant": f"u+{need}"}
    return {"acl_grant": acl_entry, f"{who}_grant": f"{who}+{need}"}


def _acl_entry(target: dict[str, Any], user: dict[str, Any], is_dir: bool, need: str) -> str:
    """`u:USER:PERMS` for setfacl: what the user has now plus `need`, as a named-user
    entry replaces the class bits that applied to the user (`u:nobody:x` on a 0744
    directory would take away the r that other gave)."""
    perms = "".join(letter for letter, access in (("r", "read"), ("w", "write"),
                                                  ("x", "execute"))
                    if letter in need or allowed(access, target, user, is_dir))
    return f"u:{user['name']}:{perms}"


def _who(target: dict[str, Any], user: dict[str, Any]) -> str:
    """The chmod class whose bits apply to `user` on `target`: u, g or o (root: u, as
    for root any x bit will do)."""
    if user["uid"] in (0, target["uid"]):
        return "u"
    return "g" if target["gid"] in user["gids"] else "o"


def _missing_bits(need: str, item: dict[str, Any], user: dict[str, Any],
                  is_dir: bool) -> str:
    """The letters `user` lacks for `need` on the path itself."""
    letters = "" if allowed(need, item, user, is_dir) else _LETTER[need]
    if is_dir and need != "execute" and not allowed("execute", item, user, is_dir):
        letters += "x"
    return letters


def _may(need: str, item: dict[str, Any], user: dict[str, Any], is_dir: bool) -> bool:
    """File access, plus: a directory's contents need search as well (read = list and
    open, write = create and delete). A read-only mount is fs.readonly's verdict."""
    if is_dir and need != "execute" and not allowed("execute", item, user, is_dir):
        return False
    return allowed(need, item, user, is_dir)


@probe.rule("fs.readonly", uses="paths", symptoms=["fs.readonly"])
def readonly_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Each existing path that must be written is on a filesystem that accepts writes."""
    for item in facts["paths"]:
        if "mount" in item and "write" in item["must"]:
            yield _readonly_finding(item, ctx)


def _readonly_flag(mount: dict[str, Any]) -> str | None:
    """Which flag makes the mount read-only: `ro` on the mount (mounted or remounted ro),
    or the kernel's mark on the filesystem after an error (`ro` on the superblock of a
    rw mount, or ext4's `emergency_ro` on Linux 6.x, which statvfs does not show)."""
    if "error" in mount:
        return None
    options, super_options = mount["options"].split(","), mount["super_options"].split(",")
    if "emergency_ro" in super_options:  # the kernel's mark, even under a ro bind mount
        return "emergency_ro"
    return "ro" if "ro" in options or "ro" in super_options else None


def _readonly_finding(item: dict[str, Any], ctx: RuleContext) -> Finding:
    path, mount = item["path"], item["mount"]
    if "error" in mount:
        return ctx.finding("fs.readonly", Severity.UNKNOWN,
                           f"cannot tell whether {path} is on a read-only filesystem: "
                           f"{mount['error']}", evidence={"path": path, **mount},
                           identity=("path",))
    where = f"{mount['mountpoint']} ({mount['fstype']} on {mount['device']})"
    flag = _readonly_flag(mount)
    evidence = {"path": path, **mount}
    what = f"{path} is"
    if "create_in" in item:  # missing: fs.missing says so, this says whether it can be made
        evidence["create_in"] = item["create_in"]
        what = f"{path} does not exist and would be created in {item['create_in']}, which is"
    if flag is None:
        return ctx.finding("fs.readonly", Severity.OK, f"{what} on a writable filesystem: "
                           f"{where}", observed=0, evidence=evidence, identity=("path",))
    by_kernel = flag == "emergency_ro" or "ro" not in mount["options"].split(",")
    configured = mount["fstab_options"]
    # fstab listing the mount point without `ro` means it was meant to be writable.
    remounted = None if configured is None else "ro" not in configured.split(",")
    evidence.update(remounted=remounted, kernel_readonly=by_kernel)
    if remounted or by_kernel:
        evidence["expected_rw"] = mount["mountpoint"]
        if mount["device"].startswith("/dev/"):
            evidence["block_device"] = mount["device"]
    if remounted and not by_kernel:
        # A filesystem the kernel stopped after an error must not be remounted rw as it
        # is: ext4 refuses it on Linux 6.x, and older kernels write on the damage.
        evidence["remount_rw"] = mount["mountpoint"]
    if by_kernel:
        cause = f"the kernel made the filesystem read-only (`{flag}` on the filesystem while " \
                "the mount itself is rw): it met an I/O or filesystem error (ext4 " \
                "errors=remount-ro); the kernel log says which"
    elif remounted:
        cause = f"{mount['fstab']} mounts it `{configured}`, so it was remounted read-only at " \
                "run time, and on the mount itself: by `mount -o remount,ro` or a tool " \
                "running it, perhaps after I/O errors (the kernel marks the filesystem " \
                "instead, which it has not)"
    elif remounted is False:
        evidence["mount_config"] = f"the {mount['fstab']} line for {mount['mountpoint']}"
        cause = f"{mount['fstab']} mounts {mount['mountpoint']} read-only (`{configured}`): " \
                "the path the service writes is on a filesystem meant to be read-only"
    else:
        evidence["mount_config"] = f"whatever mounts it: not {mount['fstab']}, so a command, " \
                                   "a systemd mount unit or a container volume (`:ro`)"
        unread = f"cannot be read ({mount['fstab_error']})" if mount.get("fstab_error") \
            else "does not list it"
        cause = f"it is mounted read-only ({mount['options']}) and {mount['fstab']} {unread}, " \
                "so whether that is intended is not known"
    how = f"`{flag}` set by the kernel" if by_kernel else f"mounted {mount['options']}"
    return applicable_remedy(ctx.finding(
        "fs.readonly", Severity.CRITICAL, f"{what} on a read-only filesystem: {where}, {how}",
        observed=1, evidence=evidence, identity=("path",), cause=cause))


@probe.rule("fs.stale", uses="stale", symptoms=["fs.stale.files", "fs.missing"],
            thresholds={"fs.stale.files": Threshold(100, None, unit="files")})
def stale_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Old files in each directory, counted against `warn_files`/`crit_files`."""
    for scan in facts["dirs"]:
        where = scan["dir"]
        if scan["exists"] is None:
            yield ctx.finding("fs.stale.files", Severity.UNKNOWN,
                              f"cannot walk {where}: {scan['error']}",
                              evidence={"dir": where, "pattern": scan["pattern"],
                                        "error": scan["error"]}, identity=("dir", "pattern"),
                              cause="the doctor itself cannot reach the directory, or "
                                    "the path is not a directory")
            continue
        if not scan["exists"]:
            yield ctx.finding("fs.missing", Severity.WARNING,
                              f"{where} (watched for stale files) does not exist",
                              observed=1, evidence={"path": where}, identity=("path",),
                              cause="the directory was never created or the path is misspelled")
            continue
        yield _stale_finding(scan, ctx)


def _stale_finding(scan: dict[str, Any], ctx: RuleContext) -> Finding:
    threshold = ctx.threshold("fs.stale.files")
    if scan["warn_files"] is not None or scan["crit_files"] is not None:
        threshold = replace(threshold, warning=scan["warn_files"] or threshold.warning,
                            critical=scan["crit_files"] or threshold.critical)
    count = scan["count"]
    severity = threshold.classify(count)
    bound = ""
    if scan["capped"]:
        bound = f" (walk stopped by its {scan['capped']} cap after {scan['visited']} entries: " \
                "at least this many)"
    days = f"{scan['older_than_days']:g}"
    evidence = {key: scan[key] for key in ("dir", "pattern", "older_than_days", "count",
                                           "bytes", "visited", "unreadable", "other_fs",
                                           "capped", "oldest")}
    evidence.update(bytes_human=human_bytes(scan["bytes"]),
                    older_than_minutes=round(scan["older_than_days"] * 1440))  # for find -mmin
    return ctx.finding(
        "fs.stale.files", severity,
        f"{count} files matching {scan['pattern']!r} older than {days} days in {scan['dir']} "
        f"({human_bytes(scan['bytes'])}){bound}",
        observed=count, threshold=threshold.level_for(severity), unit="files",
        evidence=evidence, identity=("dir", "pattern"),
        cause="the job that should remove or process these files is not running or failing"
        if severity is not Severity.OK else None)
