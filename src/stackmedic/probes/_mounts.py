"""Which mounts the `host` probe looks at, and their statfs numbers, without hanging.

A real host lists dozens of mounts that say nothing about disk space: kernel
interfaces (proc, sysfs, cgroup), read-only images (squashfs snaps, ISO), container
layers (overlay under /var/lib/docker), bind mounts of a filesystem already listed.
They are skipped unless the user names a path on them under `mounts:`. Each statfs
runs in its own daemon thread: a hard-mounted NFS share whose server is gone blocks
statfs() forever, and must cost one `unknown` finding, not the whole run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["mount_facts"]

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


def mount_facts(listed: Sequence[str], cap: int, budget: float) -> dict[str, Any]:
    """Usage facts for the real mounts, or for the mounts holding the `listed` paths."""
    import psutil

    # The last entry for a mount point is the one on top, the one paths resolve to.
    table = {p.mountpoint: (p.mountpoint, p.device, p.fstype)
             for p in psutil.disk_partitions(all=True)}
    missing: list[str] = []
    chosen: dict[str, Mount] = {}
    for path in listed:
        real = os.path.realpath(path)
        if not Path(real).exists():
            missing.append(path)
        elif (mount := _containing(real, table.values())) is not None:
            chosen[mount[0]] = mount
    if not listed:
        chosen = {mp: entry for mp, entry in table.items() if _is_real(mp, entry[2])}
    entries = sorted(chosen.values(), key=lambda e: (len(e[0]), e[0]))
    stats = _statfs_all([e[0] for e in entries[:cap]], budget)
    mounts: list[dict[str, Any]] = []
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


def _is_real(mountpoint: str, fstype: str) -> bool:
    if fstype == "overlay" and mountpoint == "/":
        return True  # a container's root: its usage is what the service sees
    return fstype not in _PSEUDO and not mountpoint.startswith(_SKIP_UNDER)


def _containing(path: str, mounts: Iterable[Mount]) -> Mount | None:
    """The mount with the longest mount point that is a prefix of `path`."""
    best: Mount | None = None
    for entry in mounts:
        mountpoint = entry[0]
        if (path == mountpoint or path.startswith(mountpoint.rstrip("/") + "/")) and \
                (best is None or len(mountpoint) > len(best[0])):
            best = entry
    return best


def _statfs_all(points: list[str], budget: float) -> dict[str, dict[str, Any] | str]:
    """statfs of each mount point in its own daemon thread; a string is an error."""
    results: dict[str, dict[str, Any] | str] = {}

    def work(point: str) -> None:
        try:
            vfs = os.statvfs(point)
            device = Path(point).stat().st_dev
        except OSError as err:
            results[point] = err.strerror or str(err)
            return
        results[point] = {
            "st_dev": device,
            "total_bytes": vfs.f_blocks * vfs.f_frsize,
            "free_bytes": vfs.f_bfree * vfs.f_frsize,
            "avail_bytes": vfs.f_bavail * vfs.f_frsize,
            "inodes_total": vfs.f_files,
            "inodes_free": vfs.f_ffree,
            "readonly": bool(vfs.f_flag & os.ST_RDONLY),
        }

    threads = [threading.Thread(target=work, args=(point,), daemon=True,
                                name="stackmedic-statfs") for point in points]
    for thread in threads:
        thread.start()
    end = time.monotonic() + max(0.0, budget)
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return {point: results.get(point, f"statfs timed out after {max(0.0, budget):.1f}s")
            for point in points}
