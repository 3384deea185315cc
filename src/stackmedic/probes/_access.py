"""What the kernel would allow: facts about users, paths and POSIX ACLs, and the
access decision the `fs` rules apply to them (owner, else group, else other bits;
root bypasses all but execute; an access ACL is evaluated like posix_acl_permission()).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

__all__ = ["BITS", "allowed", "existing_ancestor", "stat_facts", "user_facts"]

BITS = {"read": 4, "write": 2, "execute": 1}


def user_facts(user: str | None) -> dict[str, Any]:
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
        entry = pwd.getpwuid(int(user)) if user.isdecimal() else pwd.getpwnam(user)
    except (KeyError, ValueError, OverflowError):  # ValueError: a NUL in the name
        if user.isdecimal() and int(user) < 2**32 - 1:
            # A container's arbitrary uid often has no passwd entry: the kernel still
            # applies owner and other bits to it; no group is known to apply.
            return {"name": user, "uid": int(user), "gids": [], "effective": False,
                    "note": "uid not in the password database: no group membership known"}
        return {"name": user, "error": "no such user"}
    return {"name": entry.pw_name, "uid": entry.pw_uid,
            "gids": sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))), "effective": False}


def stat_facts(path: str) -> dict[str, Any]:
    """Owner, group and mode of `path` and of each directory the kernel walks to reach it."""
    absolute = str(Path(path).absolute())
    try:
        info = Path(absolute).stat()
    except FileNotFoundError:
        try:  # a symlink whose target is gone says where it points
            return {"exists": False, "dangling_to": str(Path(absolute).readlink())}
        except OSError:
            return {"exists": False}
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the configured path
        return {"exists": None, "error": getattr(err, "strerror", None) or str(err)}
    # A symlink in the path means both the literal and the resolved directories are walked.
    real = os.path.realpath(absolute)
    walked = dict.fromkeys([*_ancestors(absolute), *_ancestors(real)])
    parents = []
    for directory in walked:
        try:
            parents.append(_with_acl(directory, {"path": directory,
                                                 **_owner_mode(Path(directory).stat())}))
        except OSError:
            continue
    return {"exists": True, "kind": "dir" if stat.S_ISDIR(info.st_mode) else
            "file" if stat.S_ISREG(info.st_mode) else "other",
            **_with_acl(absolute, _owner_mode(info)),
            "parents": parents, "acl": _has_acl(absolute), "real": real,
            "dev": f"{os.major(info.st_dev)}:{os.minor(info.st_dev)}"}


def existing_ancestor(path: str) -> dict[str, str] | None:
    """The deepest directory above a missing `path` that exists (where creating it
    starts): its path, resolved path and device, or None when none can be stat'ed."""
    for directory in reversed(_ancestors(str(Path(path).absolute()))):
        try:
            info = Path(directory).stat()
        except (OSError, ValueError):
            continue
        return {"path": directory, "real": os.path.realpath(directory),
                "dev": f"{os.major(info.st_dev)}:{os.minor(info.st_dev)}"}
    return None


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


def _with_acl(path: str, facts: dict[str, Any]) -> dict[str, Any]:
    entries = _acl_entries(path)
    return {**facts, "acl_entries": entries} if entries else facts


def _has_acl(path: str) -> bool:
    try:
        return "system.posix_acl_access" in os.listxattr(path)
    except (OSError, AttributeError):  # no xattrs here (or not Linux)
        return False


# Tags of a POSIX ACL entry, as <linux/posix_acl.h> numbers them.
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 1, 2, 4, 8, 16, 32
_ACL_CAP = 256  # entries read at most (the xattr itself is at most 64 KiB)


def _acl_entries(path: str) -> list[list[int]] | None:
    """The access ACL of `path` as [tag, perm, id] entries, or None without one.

    The xattr is a little-endian u32 version (2) followed by (u16 tag, u16 perm,
    u32 id) entries, sorted by tag and id, which is the order the kernel walks."""
    import struct

    try:
        raw = os.getxattr(path, "system.posix_acl_access")
    except (OSError, AttributeError):  # no ACL, no xattr support, or not Linux
        return None
    if len(raw) < 4 or struct.unpack_from("<I", raw)[0] != 2 or (len(raw) - 4) % 8:
        return None
    count = min((len(raw) - 4) // 8, _ACL_CAP)
    return [list(struct.unpack_from("<HHI", raw, 4 + 8 * i)) for i in range(count)]


def _acl_allows(entries: list[list[int]], bit: int, target: dict[str, Any],
                user: dict[str, Any]) -> bool:
    """posix_acl_permission() for one permission bit (4 r, 2 w, 1 x)."""
    found = False
    mask = next((perm for tag, perm, _id in entries if tag == ACL_MASK), 7)
    for tag, perm, ident in entries:
        if tag == ACL_USER_OBJ and user["uid"] == target["uid"]:
            return bool(perm & bit)
        if tag == ACL_USER and user["uid"] == ident:
            return bool(perm & mask & bit)
        if (tag == ACL_GROUP_OBJ and target["gid"] in user["gids"]) or \
                (tag == ACL_GROUP and ident in user["gids"]):
            found = True
            if perm & bit:
                return bool(perm & mask & bit)
        if tag == ACL_OTHER:
            return not found and bool(perm & bit)
    return False


def allowed(need: str, target: dict[str, Any], user: dict[str, Any], is_dir: bool) -> bool:
    """May `user` (uid, gids) `need` (read/write/execute) `target` (uid, gid, mode)?"""
    mode = target["mode"]
    if user["uid"] == 0:
        # Root bypasses permission bits, except that executing a file needs some x bit.
        return need != "execute" or is_dir or bool(mode & 0o111)
    if target.get("acl_entries"):
        return _acl_allows(target["acl_entries"], BITS[need], target, user)
    if user["uid"] == target["uid"]:
        bits = mode >> 6  # the owner class applies even when group/other would allow more
    elif target["gid"] in user["gids"]:
        bits = mode >> 3
    else:
        bits = mode
    return bool(bits & BITS[need])
