"""The `fs` component kind: paths a service needs, and directories that fill up.

    {kind: fs, user: www-data,
     paths: [{path: /var/lib/app, must: [exist, read, write], type: dir}],
     stale: [{dir: /var/spool/x, older_than_days: 7, pattern: "*.tmp", warn_files: 100}]}

`paths` reports `fs.missing` and `fs.permission.denied`. Access is computed the way
the kernel decides it for the configured user: owner, else group (the user's
primary and supplementary groups), else other bits; search (x) on every directory
on the way; root reads and writes anything and executes what has any x bit; nobody
writes to a read-only mount. POSIX ACLs are not evaluated (evidence says when one
is present). Without `user:` the verdict is for the doctor's own effective ids.

`stale` counts files older than N days (count and bytes, the oldest named) with a
walk bounded in entries and time; a bounded walk says so and its counts are then
lower bounds.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stackmedic.checks import CollectContext, Facts, Probe, RuleContext
from stackmedic.config import ComponentBase
from stackmedic.findings import Finding, Severity
from stackmedic.probes._hostfacts import EVIDENCE_CAP, human_bytes
from stackmedic.thresholds import Threshold

Access = Literal["exist", "read", "write", "execute"]
_BITS = {"read": 4, "write": 2, "execute": 1}
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
    older_than_days: float = Field(7, gt=0)
    pattern: str = Field("*", description="shell pattern matched against file names")
    recursive: bool = True
    warn_files: int | None = Field(None, ge=1, description="overrides the warning threshold")
    crit_files: int | None = Field(None, ge=1, description="overrides the critical threshold")
    max_entries: int = Field(100_000, ge=1, description="directory entries visited at most")


class FsComponent(ComponentBase):
    """A stack-file entry: paths that must be usable and directories to keep clean."""

    user: str | None = Field(None, description="default user for `paths` (else the doctor's)")
    paths: list[PathCheck] = Field(default_factory=list)
    stale: list[StaleCheck] = Field(default_factory=list)


probe = Probe("fs", FsComponent, description="files and directories a service needs")


# --- collectors ---------------------------------------------------------------------

@probe.collector("paths", timeout=5.0)
def paths_collector(component: FsComponent, ctx: CollectContext) -> Facts | None:
    """stat of each path and of every directory above it, and who the user is."""
    if not component.paths:
        return None
    return {"paths": [{"path": check.path, "must": list(check.must), "type": check.type,
                       "user": _user_facts(check.user or component.user), **_stat_facts(check.path)}
                      for check in component.paths]}


def _user_facts(user: str | None) -> dict[str, Any]:
    """uid and every gid of `user`, or of this process when `user` is None."""
    import pwd

    if user is None:
        uid = os.geteuid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        return {"name": name, "uid": uid, "gids": sorted({os.getegid(), *os.getgroups()}),
                "effective": True}
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        return {"name": user, "error": "no such user"}
    return {"name": entry.pw_name, "uid": entry.pw_uid,
            "gids": sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))), "effective": False}


def _stat_facts(path: str) -> dict[str, Any]:
    """Owner, group and mode of `path` and of each directory the kernel walks to reach it."""
    absolute = str(Path(path).absolute())
    try:
        info = Path(absolute).stat()
    except FileNotFoundError:
        return {"exists": False}
    except OSError as err:
        return {"exists": None, "error": err.strerror or str(err)}
    # A symlink in the path means both the literal and the resolved directories are walked.
    walked = dict.fromkeys([*_ancestors(absolute), *_ancestors(os.path.realpath(absolute))])
    parents = []
    for directory in walked:
        try:
            parents.append({"path": directory, **_owner_mode(Path(directory).stat())})
        except OSError:
            continue
    try:
        readonly = bool(os.statvfs(absolute).f_flag & os.ST_RDONLY)
    except OSError:
        readonly = False
    return {"exists": True, "kind": "dir" if stat.S_ISDIR(info.st_mode) else
            "file" if stat.S_ISREG(info.st_mode) else "other", **_owner_mode(info),
            "parents": parents, "readonly_fs": readonly, "acl": _has_acl(absolute)}


def _ancestors(path: str) -> list[str]:
    """'/a/b/c' → ['/', '/a', '/a/b']."""
    parts = path.strip("/").split("/")[:-1]
    return ["/"] + ["/" + "/".join(parts[:i + 1]) for i in range(len(parts)) if parts[i]]


def _owner_mode(info: os.stat_result) -> dict[str, Any]:
    import grp
    import pwd

    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return {"uid": info.st_uid, "gid": info.st_gid, "owner": owner, "group": group,
            "mode": stat.S_IMODE(info.st_mode)}


def _has_acl(path: str) -> bool:
    try:
        return "system.posix_acl_access" in os.listxattr(path)
    except (OSError, AttributeError):  # no xattrs here (or not Linux)
        return False


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
    facts: dict[str, Any] = {**check.model_dump(), "exists": Path(check.dir).is_dir(),
                             "count": 0, "bytes": 0, "visited": 0, "unreadable": 0,
                             "capped": None}
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
                        if check.recursive:
                            stack.append(entry.path)
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

def allowed(need: str, target: dict[str, Any], user: dict[str, Any], is_dir: bool) -> bool:
    """May `user` (uid, gids) `need` (read/write/execute) `target` (uid, gid, mode)?"""
    mode = target["mode"]
    if user["uid"] == 0:
        # Root bypasses permission bits, except that executing a file needs some x bit.
        return need != "execute" or is_dir or bool(mode & 0o111)
    if user["uid"] == target["uid"]:
        bits = mode >> 6  # the owner class applies even when group/other would allow more
    elif target["gid"] in user["gids"]:
        bits = mode >> 3
    else:
        bits = mode
    return bool(bits & _BITS[need])


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
            "does not exist"
        yield ctx.finding("fs.missing", Severity.CRITICAL, f"{path} {what}", observed=1,
                          evidence={**base, "expected_type": item["type"],
                                    "actual_type": item.get("kind")}, identity=("path",),
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
                "group": item["group"], "mode": mode, "acl": item["acl"]}
    # Reaching the path needs search permission on every directory above it.
    for parent in item["parents"]:
        if not allowed("execute", parent, user, is_dir=True):
            pmode = f"{parent['mode']:04o}"
            evidence.update(denied=["search"], need="x", blocking_path=parent["path"],
                            blocking_owner=parent["owner"], blocking_group=parent["group"],
                            blocking_mode=pmode)
            return ctx.finding(
                "fs.permission.denied", Severity.CRITICAL,
                f"{user['name']} cannot reach {path}: {parent['path']} (mode {pmode} "
                f"{parent['owner']}:{parent['group']}) denies search", observed=1,
                evidence=evidence, identity=("path", "user"),
                cause=f"{parent['path']} lacks the x bit for {user['name']}'s class "
                      "(owner, group or other)")
    needs = [need for need in item["must"] if need != "exist"]
    is_dir = item["kind"] == "dir"
    denied = [need for need in needs if not _may(need, item, user, is_dir)]
    if not denied:
        what = ", ".join(needs) or "reach"
        return ctx.finding("fs.permission.denied", Severity.OK,
                           f"{user['name']} can {what} {path}", observed=0,
                           evidence=evidence, identity=("path", "user"))
    evidence.update(denied=denied, need="".join(_LETTER[need] for need in denied),
                    readonly_fs=item["readonly_fs"])
    ro = item["readonly_fs"] and "write" in denied and user["uid"] == 0
    cause = ("the filesystem is mounted read-only" if ro else
             f"mode {mode} {item['owner']}:{item['group']} gives {user['name']} no "
             f"{'/'.join(denied)} (the service runs as another user than the files' owner, "
             "or a deploy step reset ownership)")
    if item["acl"]:
        cause += "; a POSIX ACL is present and may change this verdict (getfacl)"
    return ctx.finding("fs.permission.denied", Severity.CRITICAL,
                       f"{user['name']} cannot {'/'.join(denied)} {path} "
                       f"(mode {mode}, owner {item['owner']}:{item['group']})",
                       observed=len(denied), evidence=evidence, identity=("path", "user"),
                       cause=cause)


def _may(need: str, item: dict[str, Any], user: dict[str, Any], is_dir: bool) -> bool:
    """File access, plus: writing needs a writable mount; a directory's contents need
    search as well (read = list and open, write = create and delete)."""
    if need == "write" and item["readonly_fs"]:
        return False
    if is_dir and need != "execute" and not allowed("execute", item, user, is_dir):
        return False
    return allowed(need, item, user, is_dir)


@probe.rule("fs.stale", uses="stale", symptoms=["fs.stale.files", "fs.missing"],
            thresholds={"fs.stale.files": Threshold(100, None, unit="files")})
def stale_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Old files in each directory, counted against `warn_files`/`crit_files`."""
    for scan in facts["dirs"]:
        where = scan["dir"]
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
                                           "bytes", "visited", "unreadable", "capped",
                                           "oldest")}
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
