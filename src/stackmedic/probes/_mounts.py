"""Mount tables, and the statfs numbers of mounts, read without hanging.

The `host` probe looks at disk space. A real host lists dozens of mounts that say
nothing about it: kernel interfaces (proc, sysfs, cgroup), read-only images (squashfs
snaps, ISO), container layers (overlay under /var/lib/docker), bind mounts of a
filesystem already listed. They are skipped unless the user names a path on them under
`mounts:`. Each statfs runs in its own daemon thread: a hard-mounted NFS share whose
server is gone blocks statfs() forever, and must cost one `unknown` finding, not the
whole run.

The `fs` probe asks which mount holds a path and whether it is read-only. That comes
from /proc/self/mountinfo, which never touches the filesystems themselves (a dead NFS
server cannot block it) and, unlike /proc/mounts and statvfs(), keeps the superblock's
options apart from the mount's: ext4 after an error with errors=remount-ro shows only
there (`emergency_ro` since Linux 6.x, `ro` before), while statvfs() and access(2)
still call the filesystem writable.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from stackmedic.probes._hostfacts import read_capped

__all__ = ["MountEntry", "containing", "fstab_options", "holding", "mount_facts", "mount_table"]

# Filesystems that never hold user data worth a disk-space warning (tmpfs and overlay
# count only when listed: /dev/shm and container layers would be noise otherwise).
_PSEUDO = frozenset({
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devfs",
    "devpts", "devtmpfs", "efivarfs", "fuse.gvfsd-fuse", "fuse.lxcfs", "fuse.portal",
    "fuse.snapfuse", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nfsd", "nsfs", "overlay",
    "proc", "pstore", "ramfs", "rootfs", "rpc_pipefs", "securityfs", "selinuxfs", "squashfs",
    "sysfs", "tmpfs", "tracefs",
})
# Mount points under these are kernel views, snaps or other containers' storage.
_SKIP_UNDER = ("/proc/", "/sys/", "/dev/", "/run/netns/", "/run/user/", "/snap/",
               "/var/lib/docker/", "/var/lib/containers/", "/run/containerd/",
               "/var/lib/kubelet/pods/")

Mount = tuple[str, str, str]  # mountpoint, device, fstype
M = TypeVar("M", bound=tuple[str, ...])
MOUNTINFO = "/proc/self/mountinfo"
_TABLE_CAP = 4 << 20  # bytes of a mount table read at most (a busy node: ~150 B a mount)


class MountEntry(NamedTuple):
    """One mount as /proc/self/mountinfo describes it."""

    mountpoint: str
    device: str  # the source: /dev/sda1, server:/export, tmpfs
    fstype: str
    options: str  # this mount's own (`ro` when mounted or remounted ro)
    super_options: str  # the filesystem's (`ro` or `emergency_ro` when the kernel set it)
    dev: str  # major:minor of the filesystem, as stat() gives it (btrfs subvolumes aside)


def mount_table(path: str = MOUNTINFO) -> list[MountEntry]:
    """The mounts of this process's namespace, in mount order; OSError propagates."""
    entries = []
    for line in _lines(path, _TABLE_CAP):
        # 36 35 98:0 /root /mnt rw,noatime master:1 - ext4 /dev/sda1 rw,errors=remount-ro
        mine, sep, theirs = line.partition(" - ")
        fields, rest = mine.split(" "), theirs.split(" ")
        if sep and len(fields) >= 6 and len(rest) >= 3:
            entries.append(MountEntry(_unescape(fields[4]), _unescape(rest[1]), rest[0],
                                      fields[5], rest[2], fields[2]))
    return entries


def fstab_options(path: str) -> dict[str, str]:
    """Mount point → options of each fstab(5) line (the last line wins, as for mount -a;
    a line may stop after the type, meaning `defaults`); OSError propagates."""
    entries = {}
    for line in _lines(path, 65536):
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith("#"):
            entries[os.path.normpath(_unescape(fields[1]))] = \
                fields[3] if len(fields) > 3 else "defaults"
    return entries


def _lines(path: str, cap: int) -> list[str]:
    """The lines of a mount table. Both tables escape only space, tab, newline and
    backslash, so a name may hold \x1c or \x85, which splitlines() would break at."""
    return read_capped(path, cap).split("\n")


def _unescape(field: str) -> str:
    r"""Both tables write a space in a path as \040 (tab \011, backslash \134)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def mount_facts(listed: Sequence[str], cap: int, budget: float) -> dict[str, Any]:
    """Usage facts for the real mounts, or for the mounts holding the `listed` paths."""
    import psutil

    end = time.monotonic() + max(0.0, budget)
    # The last entry for a mount point is the one on top, the one paths resolve to.
    table = {p.mountpoint: (p.mountpoint, p.device, p.fstype)
             for p in psutil.disk_partitions(all=True)}
    missing: list[str] = []
    hung: list[dict[str, Any]] = []  # listed paths that could not be resolved
    chosen: dict[str, Mount] = {}
    # Resolving a listed path stats every directory on the way: on a dead NFS server
    # that blocks like statfs does, so it gets the same treatment (half the budget).
    resolved = _in_threads(_resolve, list(dict.fromkeys(listed)), budget / 2)
    for path in dict.fromkeys(listed):
        real = resolved[path]
        if real is None:
            hung.append({"mountpoint": path, "device": None, "fstype": None,
                         "error": f"resolving the path timed out after {budget / 2:.1f}s"})
        elif isinstance(real, FileNotFoundError | NotADirectoryError):
            missing.append(path)
        elif isinstance(real, Exception):  # no permission, a NUL byte in the path, …
            hung.append({"mountpoint": path, "device": None, "fstype": None,
                         "error": getattr(real, "strerror", None) or str(real)})
        elif (mount := containing(real, table.values())) is not None:
            chosen[mount[0]] = mount
    if not listed:
        chosen = {mp: entry for mp, entry in table.items() if _is_real(mp, entry[2])}
    entries = sorted(chosen.values(), key=lambda e: (len(e[0]), e[0]))
    stats = _statfs_all([e[0] for e in entries[:cap]], end - time.monotonic())
    mounts: list[dict[str, Any]] = list(hung)
    devices: set[int] = set()
    for mountpoint, device, fstype in entries[:cap]:
        base = {"mountpoint": mountpoint, "device": device, "fstype": fstype}
        stat = stats[mountpoint]
        if isinstance(stat, str):
            mounts.append({**base, "error": stat})
            continue
        device = stat.pop("st_dev")
        if device in devices and not listed:
            continue  # a bind mount of a filesystem already counted
        devices.add(device)
        mounts.append({**base, **stat})
    return {"mounts": mounts, "missing": missing, "skipped": len(table) - len(mounts),
            "capped": len(entries) > cap}


def _resolve(path: str) -> str:
    """The real path of an existing `path`; FileNotFoundError when there is none."""
    real = os.path.realpath(path, strict=True)
    Path(real).stat()
    return real


def _is_real(mountpoint: str, fstype: str) -> bool:
    if fstype == "overlay" and mountpoint == "/":
        return True  # a container's root: its usage is what the service sees
    return fstype not in _PSEUDO and not mountpoint.startswith(_SKIP_UNDER)


def holding(path: str, dev: str, table: Sequence[MountEntry]) -> MountEntry | None:
    """The mount holding `path` (whose stat() device is `dev`): of the mounts on its way,
    the deepest of that device. A mount stacked over a directory hides those mounted
    below it, which stay in the table with longer mount points; mount point alone
    decides when no mount has the device (a btrfs subvolume stats as its own)."""
    return containing(path, [entry for entry in table if entry.dev == dev]) or \
        containing(path, table)


def containing(path: str, mounts: Iterable[M]) -> M | None:
    """The mount (a tuple led by its mount point) with the longest mount point that is a
    prefix of `path`; of mounts stacked on one point, the last, on top."""
    best: M | None = None
    for entry in mounts:
        mountpoint = entry[0]
        if (path == mountpoint or path.startswith(mountpoint.rstrip("/") + "/")) and \
                (best is None or len(mountpoint) >= len(best[0])):
            best = entry
    return best


def _statfs_all(points: list[str], budget: float) -> dict[str, dict[str, Any] | str]:
    """statfs of each mount point in its own daemon thread; a string is an error."""
    results = _in_threads(_statfs, points, budget)
    return {point: (f"statfs timed out after {max(0.0, budget):.1f}s" if result is None else
                    result.strerror or str(result) if isinstance(result, OSError) else result)
            for point, result in results.items()}


def _statfs(point: str) -> dict[str, Any]:
    vfs = os.statvfs(point)
    return {
        "st_dev": Path(point).stat().st_dev,
        "total_bytes": vfs.f_blocks * vfs.f_frsize,
        "free_bytes": vfs.f_bfree * vfs.f_frsize,
        "avail_bytes": vfs.f_bavail * vfs.f_frsize,
        "inodes_total": vfs.f_files,
        "inodes_free": vfs.f_ffree,
        "readonly": bool(vfs.f_flag & os.ST_RDONLY),
    }


def _in_threads(func: Callable[[str], Any], items: list[str],
                budget: float) -> dict[str, Any]:
    """`func(item)` for each item, each in its own daemon thread, all within `budget`
    seconds: the result, the OSError/ValueError raised, or None if it did not return."""
    results: dict[str, Any] = {}

    def work(item: str) -> None:
        try:
            results[item] = func(item)
        except (OSError, ValueError) as err:
            results[item] = err

    threads = [threading.Thread(target=work, args=(item,), daemon=True,
                                name="stackmedic-statfs") for item in items]
    for thread in threads:
        thread.start()
    end = time.monotonic() + max(0.0, budget)
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return {item: results.get(item) for item in items}
