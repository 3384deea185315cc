"""The `host` component kind: the machine stackmedic runs on.

`{kind: host}` checks disk space and inodes on every real mount, available memory,
swap use and swapping, CPU busy over a short sample, load per core, and file
descriptors system-wide and per process (the processes closest to their
RLIMIT_NOFILE soft limit). `mounts: [/var/lib/pg, /dev/shm]` restricts the disk
checks to the mounts holding those paths (a listed tmpfs counts; unlisted pseudo
filesystems never do). Facts come from psutil and /proc; every list is capped and
every stat of a mount runs in its own daemon thread, so a hung NFS server costs the
deadline and a finding, not the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import Field

from stackmedic.checks import CollectContext, Facts, Probe, RuleContext
from stackmedic.config import ComponentBase
from stackmedic.findings import Finding, Remedy, Severity
from stackmedic.probes._hostfacts import (
    EVIDENCE_CAP,
    describe_process,
    human_bytes,
    judge,
    read_capped,
)
from stackmedic.probes._mounts import mount_facts
from stackmedic.thresholds import Threshold


class HostComponent(ComponentBase):
    """A stack-file entry: `{kind: host, mounts: [/var/lib/app], cpu_sample_s: 0.5}`."""

    mounts: list[str] = Field(default_factory=list, description=(
        "paths whose mounts to check (default: every real mount; a listed tmpfs counts)"))
    cpu_sample_s: float = Field(0.5, gt=0, le=10, description=(
        "seconds over which CPU busy, per-process CPU and swap activity are measured"))
    swap_io_bytes_s: float = Field(256 * 1024, ge=0, description=(
        "swap-in plus swap-out rate (bytes/s) that counts as active swapping (warning)"))
    max_processes: int = Field(5000, ge=1, description=(
        "cap on processes examined for CPU and file descriptors"))
    max_mounts: int = Field(100, ge=1, description="cap on mounts examined")


probe = Probe("host", HostComponent, description="the local machine: disks, memory, "
              "swap, CPU, load, file descriptors")

_RATIO = "ratio"
_NO_PROCESS: dict[str, Any] = {"pid": None, "name": None, "cmdline": None, "cores": 0.0}


# --- collectors ---------------------------------------------------------------------

@probe.collector("disks", timeout=5.0)
def disks(component: HostComponent, ctx: CollectContext) -> Facts:
    """Usage and inodes of every real mount (or of the mounts holding `mounts:`)."""
    return mount_facts(component.mounts, component.max_mounts, ctx.remaining() - 0.2)


@probe.collector("usage", timeout=15.0)
def usage(component: HostComponent, ctx: CollectContext) -> Facts:
    """CPU, swap and per-process CPU over a short sample, plus memory and load."""
    import psutil

    # Keep a second for the two process scans and the rules; never sample past the deadline.
    window = max(0.05, min(component.cpu_sample_s, ctx.remaining() - 1.0))
    me = psutil.Process()
    cpu0, swap0, self0 = psutil.cpu_times(), psutil.swap_memory(), me.cpu_times()
    t0 = time.monotonic()
    procs0 = _process_table(component.max_processes)
    t1 = time.monotonic()
    time.sleep(window)
    cpu1, swap1, self1 = psutil.cpu_times(), psutil.swap_memory(), me.cpu_times()
    t2 = time.monotonic()
    procs1 = _process_table(component.max_processes)
    t3 = time.monotonic()
    # Each process was read once per scan; the midpoints of the scans are the fairest span.
    span = max(1e-3, (t2 + t3) / 2 - (t0 + t1) / 2)

    cpu_share = sorted(((info["cpu"] - procs0[pid]["cpu"]) / span, pid)
                       for pid, info in procs1.items() if pid in procs0 and pid != me.pid)
    top_cpu = [{**describe_process(pid), "cores": round(share, 3)}
               for share, pid in reversed(cpu_share[-5:]) if share > 0]
    by_rss = sorted((info["rss"], pid) for pid, info in procs1.items())
    top_rss = [{**describe_process(pid), "rss_bytes": rss} for rss, pid in reversed(by_rss[-5:])]
    blocked = [pid for pid, info in procs1.items() if info["status"] == psutil.STATUS_DISK_SLEEP]
    memory = psutil.virtual_memory()
    fields = [name for name in cpu0._fields if name not in ("guest", "guest_nice")]
    return {
        "window_s": round(window, 3),
        "cpu_seconds": {name: round(getattr(cpu1, name) - getattr(cpu0, name), 4)
                        for name in fields},
        # The doctor's own work (this sample, concurrent collectors) is not the host's load.
        "self_cpu_seconds": round(max(0.0, (self1.user + self1.system)
                                      - (self0.user + self0.system)), 4),
        "cores": psutil.cpu_count() or 1,
        "load": [round(x, 2) for x in os.getloadavg()],
        "blocked_count": len(blocked),
        "blocked": [describe_process(pid) for pid in blocked[:EVIDENCE_CAP]],
        "memory": {"total_bytes": memory.total, "available_bytes": memory.available},
        "swap": {"total_bytes": swap1.total, "used_bytes": swap1.used,
                 "in_bytes": max(0, swap1.sin - swap0.sin),
                 "out_bytes": max(0, swap1.sout - swap0.sout)},
        "swap_io_bytes_s": component.swap_io_bytes_s,
        "top_cpu": top_cpu,
        "top_rss": top_rss,
        "processes_seen": len(procs1),
    }


def _process_table(limit: int) -> dict[int, dict[str, Any]]:
    """pid → CPU seconds, status and RSS for up to `limit` processes."""
    import psutil

    table: dict[int, dict[str, Any]] = {}
    for proc in psutil.process_iter(["cpu_times", "status", "memory_info"], ad_value=None):
        if len(table) >= limit:
            break
        times, mem = proc.info["cpu_times"], proc.info["memory_info"]
        table[proc.pid] = {"cpu": (times.user + times.system) if times else 0.0,
                           "status": proc.info["status"], "rss": mem.rss if mem else 0}
    return table


@probe.collector("fds", timeout=5.0)
def fds(component: HostComponent, ctx: CollectContext) -> Facts:
    """System file handles (/proc/sys/fs/file-nr) and processes nearest their fd limit."""
    import heapq

    import psutil

    system: dict[str, Any] | None = None
    try:
        allocated, unused, maximum = (int(x) for x in
                                      read_capped("/proc/sys/fs/file-nr", 256).split()[:3])
        system = {"allocated": allocated, "unused": unused, "max": maximum}
    except (OSError, ValueError):
        pass  # not Linux, or /proc hidden: the per-process view still stands
    nearest: list[tuple[float, int, int, int]] = []
    largest = (0, 0, 0)  # (fds, pid, soft limit): who to look at when the system runs out
    scanned, capped, supported = 0, False, hasattr(psutil.Process, "rlimit")
    for pid in psutil.pids() if supported else []:
        if scanned >= component.max_processes or ctx.remaining() < 0.3:
            capped = True
            break
        scanned += 1
        try:
            proc = psutil.Process(pid)
            count = proc.num_fds()
            soft, _hard = proc.rlimit(psutil.RLIMIT_NOFILE)
        except (psutil.Error, OSError):
            continue  # exited or not ours to inspect
        largest = max(largest, (count, pid, soft))
        if soft > 0 and soft != psutil.RLIM_INFINITY:
            item = (count / soft, pid, count, soft)
            if len(nearest) < EVIDENCE_CAP:
                heapq.heappush(nearest, item)
            else:
                heapq.heappushpop(nearest, item)
    processes = [{**describe_process(pid), "fds": count, "soft_limit": soft}
                 for _ratio, pid, count, soft in sorted(nearest, reverse=True)]
    return {"system": system, "processes": processes, "scanned": scanned, "capped": capped,
            "per_process_supported": supported, "nr_open": _nr_open(),
            "largest": {**describe_process(largest[1]), "fds": largest[0],
                        "soft_limit": largest[2]} if largest[1] else None}


def _nr_open() -> int | None:
    """fs.nr_open, the kernel's ceiling on any process's RLIMIT_NOFILE: systemd refuses
    to start a unit whose LimitNOFILE is above it (None where /proc does not say)."""
    try:
        return int(read_capped("/proc/sys/fs/nr_open", 64))
    except (OSError, ValueError):
        return None


# --- rules --------------------------------------------------------------------------

@probe.rule("host.disk", uses="disks", symptoms=["host.disk.full", "host.disk.inodes",
                                                  "fs.missing"],
            thresholds={"host.disk.full": Threshold(0.85, 0.95, unit=_RATIO),
                        "host.disk.inodes": Threshold(0.85, 0.95, unit=_RATIO)})
def disk_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Space and inodes used per mount (as `df` counts them: reserved blocks excluded)."""
    for path in facts.get("missing", []):
        yield ctx.finding("fs.missing", Severity.CRITICAL,
                          f"{path} (listed under mounts:) does not exist",
                          evidence={"path": path}, identity=("path",),
                          cause="the volume is not mounted, or the path is misspelled")
    for mount in facts.get("mounts", []):
        yield from _mount_findings(mount, ctx)


def _mount_findings(mount: dict[str, Any], ctx: RuleContext) -> Iterator[Finding]:
    where = mount["mountpoint"]
    base = {k: mount.get(k) for k in ("mountpoint", "device", "fstype")}
    if "error" in mount:
        hung = "timed out" in mount["error"]
        # The runbook's `du`/`lsof` on a mount whose statfs hangs would hang the
        # operator's shell too: a hung mount gets steps about the mount itself.
        steps = (f"Find the server behind it without touching the mount: `grep ' {where} ' "
                 "/proc/mounts` (and `timeout 5 showmount -e SERVER` / `ping SERVER`)",
                 "If the server is back, the mount recovers by itself; if it is gone for "
                 f"good, detach the mount: `umount -f -l {where}`",
                 "Remount network filesystems with `soft,timeo=` or `x-systemd.automount` "
                 "where blocking forever is worse than an error") if hung else ()
        yield ctx.finding("host.disk.full", Severity.UNKNOWN,
                          f"cannot read usage of {where}: {mount['error']}",
                          evidence={**base, "error": mount["error"]}, identity=("mountpoint",),
                          cause="a network filesystem whose server does not answer hangs "
                                "statfs()" if hung else None,
                          remedy=Remedy("host.disk.full", steps) if hung else None)
        return
    used, avail = mount["total_bytes"] - mount["free_bytes"], mount["avail_bytes"]
    if used + avail > 0:
        ratio = used / (used + avail)
        # No symptom of its own (yet), but a data mount the kernel remounted read-only
        # after I/O errors is the first thing an operator must see next to its usage.
        readonly = " (mounted read-only)" if mount.get("readonly") else ""
        yield judge(ctx, "host.disk.full", round(ratio, 4),
                    f"{where} is {ratio:.0%} full ({human_bytes(avail)} free of "
                    f"{human_bytes(mount['total_bytes'])}){readonly}",
                    cause="data, logs or temporary files growing without rotation or cleanup "
                          "(or deleted files still held open)",
                    evidence={**base, "used_bytes": used, "avail_bytes": avail,
                              "total_bytes": mount["total_bytes"],
                              "avail_human": human_bytes(avail),
                              "readonly": mount.get("readonly", False),
                              **_grow_command(mount)},
                    identity=("mountpoint",))
    if mount["inodes_total"] > 0:
        inodes_used = mount["inodes_total"] - mount["inodes_free"]
        ratio = inodes_used / mount["inodes_total"]
        yield judge(ctx, "host.disk.inodes", round(ratio, 4),
                    f"{where} has used {ratio:.0%} of its inodes "
                    f"({mount['inodes_free']} free of {mount['inodes_total']})",
                    cause="a directory accumulating many small files (sessions, cache "
                          "entries, mail queue) while space is still free",
                    evidence={**base, "inodes_used": inodes_used,
                              "inodes_free": mount["inodes_free"],
                              "inodes_total": mount["inodes_total"]},
                    identity=("mountpoint",))


def _grow_command(mount: dict[str, Any]) -> dict[str, str]:
    """How to grow this filesystem once its volume is bigger (none for unknown types)."""
    fstype, where, device = mount.get("fstype") or "", mount["mountpoint"], mount.get("device")
    if fstype in ("ext2", "ext3", "ext4") and device:
        return {"grow_command": f"resize2fs {device}"}
    if fstype == "xfs":
        return {"grow_command": f"xfs_growfs {where}"}
    if fstype == "btrfs":
        return {"grow_command": f"btrfs filesystem resize max {where}"}
    if fstype == "tmpfs":  # memory-backed: no volume, only its size option
        size = 2 * int(mount.get("total_bytes") or 0) // (1024 * 1024) or 64
        return {"grow_command": f"mount -o remount,size={size}M {where}"}
    return {}


@probe.rule("host.memory", uses="usage", symptoms=["host.memory.pressure"],
            thresholds={"host.memory.pressure": Threshold(0.15, 0.05, unit=_RATIO,
                                                          direction="below")})
def memory_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Available memory (MemAvailable: free plus reclaimable cache) as a share of total."""
    memory = facts["memory"]
    ratio = memory["available_bytes"] / max(1, memory["total_bytes"])
    top = facts["top_rss"][0] if facts["top_rss"] else _NO_PROCESS
    yield judge(ctx, "host.memory.pressure", round(ratio, 4),
                f"{ratio:.0%} of memory available ({human_bytes(memory['available_bytes'])} "
                f"of {human_bytes(memory['total_bytes'])})",
                cause=f"the largest resident process is {top['name']} (pid {top['pid']}): "
                      "a leak, an oversized cache or too many workers",
                evidence={**memory, "top_rss": facts["top_rss"], "top_pid": top["pid"],
                          "top_name": top["name"]})


@probe.rule("host.swap", uses="usage", symptoms=["host.swap.active"],
            thresholds={"host.swap.active": Threshold(0.50, 0.80, unit=_RATIO)})
def swap_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Share of swap in use, and whether pages moved to or from swap during the sample."""
    swap = facts["swap"]
    rate = (swap["in_bytes"] + swap["out_bytes"]) / max(1e-3, facts["window_s"])
    evidence = {**swap, "io_bytes_s": round(rate), "window_s": facts["window_s"],
                "top_rss": facts["top_rss"]}
    if swap["total_bytes"] == 0:
        yield ctx.finding("host.swap.active", Severity.OK, "no swap configured", observed=0.0,
                          unit=_RATIO, evidence=evidence)
        return
    ratio = swap["used_bytes"] / swap["total_bytes"]
    threshold = ctx.threshold("host.swap.active")
    severity = threshold.classify(ratio)
    if rate > 0 and facts["swap_io_bytes_s"] <= rate and severity.rank < Severity.WARNING.rank:
        severity = Severity.WARNING  # active paging hurts latency whatever the share used
    activity = f", swapping {human_bytes(rate)}/s" if rate > 0 else ""
    yield ctx.finding("host.swap.active", severity,
                      f"{ratio:.0%} of swap in use ({human_bytes(swap['used_bytes'])}){activity}",
                      observed=round(ratio, 4), threshold=threshold.level_for(severity),
                      unit=_RATIO, evidence=evidence,
                      cause=("memory demand exceeds RAM: the kernel is paging working memory "
                             "to disk" if severity is not Severity.OK else None))


@probe.rule("host.cpu", uses="usage", symptoms=["host.cpu.saturated"],
            thresholds={"host.cpu.saturated": Threshold(0.80, 0.95, unit=_RATIO)})
def cpu_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """CPU busy (everything but idle and iowait, less the doctor's own use) over the
    sample window, all cores."""
    seconds = facts["cpu_seconds"]
    total = sum(seconds.values())
    if total <= 0:
        yield ctx.finding("host.cpu.saturated", Severity.UNKNOWN,
                          "CPU counters did not advance during the sample", evidence=seconds)
        return
    idle = seconds.get("idle", 0.0) + seconds.get("iowait", 0.0)
    busy = max(0.0, (total - idle - facts.get("self_cpu_seconds", 0.0)) / total)
    shares = {f"{name}_ratio": round(value / total, 4) for name, value in seconds.items()}
    top = facts["top_cpu"][0] if facts["top_cpu"] else _NO_PROCESS
    steal = shares.get("steal_ratio", 0.0)
    if steal > 0.1:
        cause = f"the hypervisor is taking {steal:.0%} of CPU time (steal)"
    elif top["pid"] is None or top["cores"] < 0.5 * busy * facts["cores"]:
        cause = ("no long-running process accounts for most of it: short-lived processes "
                 "(builds, tests, cron jobs, fork storms) or kernel work (see system_ratio)")
    else:
        cause = (f"the busiest process is {top['name']} (pid {top['pid']}, "
                 f"{top['cores']:.2f} cores): a hot loop, a traffic spike or too few cores")
    yield judge(ctx, "host.cpu.saturated", round(busy, 4),
                f"CPU {busy:.0%} busy over {facts['window_s']}s on {facts['cores']} cores",
                cause=cause,
                evidence={**shares, "cores": facts["cores"], "window_s": facts["window_s"],
                          "self_cpu_seconds": facts.get("self_cpu_seconds"),
                          "top_cpu": facts["top_cpu"], "top_pid": top["pid"],
                          "top_name": top["name"]})


@probe.rule("host.load", uses="usage", symptoms=["host.load.high"],
            thresholds={"host.load.high": Threshold(1.5, 3.0, unit="per core")})
def load_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """5-minute load average per core (runnable plus uninterruptible tasks)."""
    load1, load5, load15 = facts["load"]
    per_core = load5 / facts["cores"]
    blocked = facts["blocked_count"]
    cause = (f"{blocked} processes are in uninterruptible sleep (D state), usually waiting "
             "on a slow disk or network filesystem" if blocked else
             "more runnable threads than cores: CPU-bound work is queueing")
    yield judge(ctx, "host.load.high", round(per_core, 3),
                f"load {load5} over 5 min on {facts['cores']} cores "
                f"({per_core:.2f} per core; 1 min {load1}, 15 min {load15})",
                cause=cause,
                evidence={"load1": load1, "load5": load5, "load15": load15,
                          "cores": facts["cores"], "blocked_count": blocked,
                          "blocked": facts["blocked"], "top_cpu": facts["top_cpu"]})


@probe.rule("host.fd", uses="fds", symptoms=["host.fd.exhausted"],
            thresholds={"host.fd.exhausted": Threshold(0.80, 0.95, unit=_RATIO)})
def fd_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Open file handles against fs.file-max, and per process against RLIMIT_NOFILE."""
    system = facts.get("system")
    if system and system["max"] > 0:
        used = system["allocated"] - system["unused"]
        ratio = used / system["max"]
        # Three significant digits, not decimals: with fs.file-max at LONG_MAX (systemd's
        # default) any real count rounds to 0 decimals and would read as "none open".
        yield judge(ctx, "host.fd.exhausted", float(f"{ratio:.3g}"),
                    f"{used} of {system['max']} system file handles in use ({ratio:.0%})",
                    cause="a process leaking descriptors (sockets, files), or fs.file-max "
                          "too low for the workload",
                    evidence={"scope": "system", **system, **(facts.get("largest") or {}),
                              "suggested_file_max": _raised(system["max"], 2097152)},
                    identity=("scope",))
    processes = facts.get("processes") or []
    if processes:
        worst = processes[0]
        ratio = worst["fds"] / worst["soft_limit"]
        yield judge(ctx, "host.fd.exhausted", round(ratio, 4),
                    f"{worst['name']} (pid {worst['pid']}) has {worst['fds']} of its "
                    f"{worst['soft_limit']} file descriptors open ({ratio:.0%})",
                    cause=f"{worst['name']} leaks descriptors (connections or files never "
                          "closed), or its RLIMIT_NOFILE soft limit is too low for its load",
                    evidence={"scope": "process", **worst, "processes": processes,
                              "scanned": facts["scanned"], "capped": facts["capped"],
                              **_nofile_evidence(worst["soft_limit"], facts.get("nr_open"))},
                    identity=("scope", "name"))


def _nofile_evidence(soft: int, nr_open: int | None) -> dict[str, int | None]:
    """The RLIMIT_NOFILE to suggest, capped at fs.nr_open (above it systemd fails to
    start the unit and prlimit is refused); None, with `nofile_ceiling` set, when the
    limit already sits at the ceiling and no value could raise it."""
    suggested = _raised(soft, 65536) if nr_open is None else min(_raised(soft, 65536), nr_open)
    at_ceiling = suggested <= soft
    return {"nr_open": nr_open, "suggested_nofile": None if at_ceiling else suggested,
            "nofile_ceiling": nr_open if at_ceiling else None}


def _raised(current: int, floor: int) -> int:
    """A limit to suggest: at least `floor`, and never below twice the current one (a
    fixed number would lower a limit that is already higher)."""
    return max(floor, 2 * current)
