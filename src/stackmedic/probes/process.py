"""The `process` component kind: is the service running, leaking, and on its port?

`{kind: process, name: nginx}` (or `cmdline: "gunicorn .*app:wsgi"`, or
`pidfile: /run/nginx.pid`, combinable: a pidfile plus a name catches a pid reused by
another program) finds the expected processes and reports:

- `process.down`: fewer than `min_count` match; for a pidfile, says whether it is
  missing, unreadable, garbage, names a dead pid, or a pid running something else;
- `process.memory.growth`: RSS sampled `memory_samples` times every
  `memory_interval_s`; flagged only when a least-squares line fits the samples well
  (r² ≥ 0.8) *and* most steps rise (≥ 60 %), so a one-off allocation or noisy
  working set is not called a leak; the rate is judged in bytes/s;
- `process.port.conflict`: with `port:`, a TCP socket listening on that port owned by
  a process that is neither a matched one nor a child of one (the holder is named).
  Every listener on the port is judged, not just the first few: with SO_REUSEPORT a
  service may open one socket per worker, and a foreign one can hide among them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from stackmedic.checks import CollectContext, Facts, Probe, RuleContext
from stackmedic.config import ComponentBase
from stackmedic.findings import Finding, Severity
from stackmedic.probes._hostfacts import (
    EVIDENCE_CAP,
    applicable_remedy,
    describe_process,
    human_bytes,
    join_cmdline,
    judge,
    read_capped,
    spread,
)
from stackmedic.thresholds import Threshold

MIN_FIT = 0.8  # r² of the least-squares line below which growth is called noise
MIN_RISING = 0.6  # share of sample-to-sample steps that must rise to call growth steady
_MIB_MIN = 60 / (1024 * 1024)  # bytes/s → MiB/min
LISTENER_CAP = 256  # listening sockets on one port kept in facts (one per worker with
                    # SO_REUSEPORT); evidence shows EVIDENCE_CAP of them
_PID = re.compile(r"[0-9]{1,10}")  # ASCII digits only: str.isdigit() accepts '²'
_PROGRAM = re.compile(r"[A-Za-z0-9_.@+-]+(?=\s|$)")  # `gunicorn .*app` → gunicorn


class ProcessComponent(ComponentBase):
    """A stack-file entry: `{kind: process, name: nginx, port: 80}`."""

    name: str | None = Field(None, description=(
        "process name as `ps -e` shows it, or the base name of its executable"))
    cmdline: str | None = Field(None, description="regular expression searched in the "
                                                  "full command line")
    pidfile: str | None = Field(None, description="file holding the main pid")
    min_count: int = Field(1, ge=1, description="processes that must match")
    port: int | None = Field(None, ge=1, le=65535, description=(
        "TCP port this service should listen on (checked for another holder)"))
    memory_samples: int = Field(5, ge=0, le=10000, description=(
        "RSS samples for the growth check (0 disables it; 3 or more to fit a trend)"))
    memory_interval_s: float = Field(1.0, gt=0, le=3600, description="seconds between samples")

    @field_validator("cmdline")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"invalid regular expression: {err}") from None
        return value

    @model_validator(mode="after")
    def _has_selector(self) -> ProcessComponent:
        if not (self.name or self.cmdline or self.pidfile):
            raise ValueError("give name, cmdline or pidfile to say which process to expect")
        if self.memory_samples in (1, 2):
            raise ValueError("memory_samples must be 0 (off) or at least 3")
        return self


probe = Probe("process", ProcessComponent, description="an expected process: running, "
              "memory trend, port ownership")


# --- matching -----------------------------------------------------------------------

def _matches(component: ProcessComponent, info: dict[str, Any]) -> bool:
    """Does a process (psutil info dict) match the name/cmdline selectors?"""
    argv = info.get("cmdline") or []
    if component.name is not None:
        names = {info.get("name"), Path(info.get("exe") or "").name,
                 Path(argv[0]).name if argv else None}
        if component.name not in names:
            return False
    return component.cmdline is None or (
        bool(argv) and re.search(component.cmdline, " ".join(argv)) is not None)


def _read_pidfile(path: str) -> dict[str, Any]:
    """The pidfile's state: missing, unreadable, invalid, or the pid on its first line
    (PostgreSQL's postmaster.pid and others put more lines after it)."""
    try:
        text = read_capped(path, 256)
    except FileNotFoundError:
        return {"path": path, "state": "missing"}
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the configured path
        return {"path": path, "state": "unreadable",
                "error": getattr(err, "strerror", None) or str(err)}
    first = text.strip().split("\n", 1)[0].strip()
    if not _PID.fullmatch(first) or int(first) <= 0:
        return {"path": path, "state": "invalid", "content": text.strip()[:40]}
    return {"path": path, "state": "ok", "pid": int(first)}


def match(component: ProcessComponent) -> dict[str, Any]:
    """The live processes this component expects, and the pidfile's state if any."""
    import psutil

    attrs = ["pid", "name", "exe", "cmdline", "status", "memory_info"]
    pidfile = _read_pidfile(component.pidfile) if component.pidfile else None
    if pidfile is not None:
        if pidfile["state"] != "ok":
            return {"pidfile": pidfile, "processes": [], "zombies": 0}
        try:
            candidates = [psutil.Process(pidfile["pid"])]
        except psutil.NoSuchProcess:
            return {"pidfile": {**pidfile, "state": "dead"}, "processes": [], "zombies": 0}
    else:
        candidates = list(psutil.process_iter())
    processes, zombies = [], 0
    for proc in candidates:
        if proc.pid == os.getpid():
            continue  # a cmdline pattern may match the doctor's own command line
        try:
            info = proc.as_dict(attrs, ad_value=None)
        except psutil.NoSuchProcess:
            continue
        if not _matches(component, info):
            continue
        if info["status"] in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            zombies += 1
            continue
        processes.append({"pid": info["pid"], "name": info["name"],
                          "cmdline": join_cmdline(info["cmdline"]),
                          "rss_bytes": info["memory_info"].rss if info["memory_info"] else None})
    if pidfile is not None and not processes:
        pidfile = {**pidfile, "state": "dead" if zombies else "mismatch",
                   "actual": describe_process(pidfile["pid"])}
    return {"pidfile": pidfile, "processes": processes, "zombies": zombies}


# --- collectors ---------------------------------------------------------------------

@probe.collector("match", timeout=5.0)
def match_collector(component: ProcessComponent, ctx: CollectContext) -> Facts:
    """The processes matching name/cmdline/pidfile (at most 10 listed)."""
    found = match(component)
    selector = {k: v for k in ("name", "cmdline", "pidfile")
                if (v := getattr(component, k)) is not None}
    return {"selector": selector, "min_count": component.min_count,
            "count": len(found["processes"]), "processes": found["processes"][:EVIDENCE_CAP],
            "pidfile": found["pidfile"], "zombies": found["zombies"]}


@probe.collector("memory", timeout=60.0)
def memory_collector(component: ProcessComponent, ctx: CollectContext) -> Facts | None:
    """RSS of the matched processes (the 10 largest), sampled at a fixed interval."""
    import psutil

    if component.memory_samples == 0:
        return None
    found = sorted(match(component)["processes"], key=lambda p: -(p["rss_bytes"] or 0))
    tracked: dict[int, Any] = {}
    for item in found[:EVIDENCE_CAP]:
        try:
            tracked[item["pid"]] = psutil.Process(item["pid"])
        except psutil.NoSuchProcess:
            continue
    if not tracked:
        return None  # nothing running: process.down says so
    series: dict[int, list[list[float]]] = {pid: [] for pid in tracked}
    start, truncated = time.monotonic(), False
    for index in range(component.memory_samples):
        if index:
            # Stop early rather than be killed by the deadline with nothing to show.
            if ctx.remaining() < component.memory_interval_s + 0.3:
                truncated = True
                break
            time.sleep(max(0.0, start + index * component.memory_interval_s - time.monotonic()))
        now = round(time.monotonic() - start, 3)
        for pid, proc in tracked.items():
            with contextlib.suppress(psutil.Error):  # exited mid-window: samples stop
                series[pid].append([now, proc.memory_info().rss])
    return {"interval_s": component.memory_interval_s, "requested": component.memory_samples,
            "truncated": truncated, "matched": len(found),
            "processes": [{**describe_process(pid), "samples": series[pid]} for pid in tracked]}


@probe.collector("port", timeout=5.0)
def port_collector(component: ProcessComponent, ctx: CollectContext) -> Facts | None:
    """Who listens on `port` (TCP, any address), with each holder's ancestry."""
    import psutil

    if component.port is None:
        return None
    try:
        sockets = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError) as err:
        return {"port": component.port, "error": f"cannot list sockets: {err}"}
    listeners = []
    for sock in sockets:
        if sock.status != psutil.CONN_LISTEN or not sock.laddr or sock.laddr.port != component.port:
            continue
        ancestors: list[int] = []
        if sock.pid is not None:
            with contextlib.suppress(psutil.Error):
                ancestors = [p.pid for p in psutil.Process(sock.pid).parents()]
        listeners.append({**describe_process(sock.pid), "address": f"{sock.laddr.ip}",
                          "ancestors": ancestors})
        if len(listeners) >= LISTENER_CAP:
            break
    return {"port": component.port, "listeners": listeners,
            "matched_pids": [p["pid"] for p in match(component)["processes"]]}


# --- rules --------------------------------------------------------------------------

_PIDFILE_WHY = {
    "missing": "pidfile {path} does not exist",
    "unreadable": "pidfile {path} cannot be read ({error})",
    "invalid": "pidfile {path} does not hold a pid (starts {content!r})",
    "dead": "pidfile {path} names pid {pid}, which is not running",
    "mismatch": "pidfile {path} names pid {pid}, which now runs {running} (pid reused?)",
}


@probe.rule("process.running", uses="match", symptoms=["process.down"])
def running_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """At least `min_count` processes match; a pidfile names a live, matching pid."""
    count, wanted = facts["count"], facts["min_count"]
    what = ", ".join(f"{k} {v!r}" for k, v in facts["selector"].items())
    pidfile = facts.get("pidfile") or {}
    evidence = {**facts, "expected": what,
                "pid": facts["processes"][0]["pid"] if count else pidfile.get("pid"),
                "pidfile_path": pidfile.get("path"), "pidfile_state": pidfile.get("state"),
                # Only a pidfile naming a dead or foreign pid is stale: the runbook's
                # `rm -f` must never be offered for the pidfile of a live service.
                "stale_pid": pidfile.get("pid") if pidfile.get("state") in ("dead", "mismatch")
                else None,
                "service": _service_name(facts["selector"], ctx.component)}
    # `systemctl start` does nothing on a unit that is active with too few workers: the
    # runbook offers it only when none run, and a restart (with its cost) otherwise.
    evidence |= {"start_unit": evidence["service"] if count == 0 else None,
                 "restart_unit": evidence["service"] if 0 < count < wanted else None}
    if count >= wanted:
        yield ctx.finding("process.down", Severity.OK, f"{count} process(es) match {what}",
                          observed=count, threshold=wanted, unit="processes", evidence=evidence)
        return
    if pidfile and pidfile["state"] != "ok":
        running = (pidfile.get("actual") or {}).get("cmdline") or "another program"
        summary = _PIDFILE_WHY[pidfile["state"]].format_map({**pidfile, "running": running})
        cause = "the service crashed or was stopped without removing its pidfile" \
            if pidfile["state"] in ("dead", "mismatch") else "the service is not running " \
            "(or writes its pidfile elsewhere)"
    else:
        summary = f"{count} process(es) match {what}, expected at least {wanted}"
        cause = "the service crashed, was never started, or exited after an error " \
                "(see its logs)" if count == 0 else "some workers died or were not started"
    if facts["zombies"]:
        cause += f"; {facts['zombies']} matching zombie(s) wait for their parent to reap them"
    yield applicable_remedy(ctx.finding(
        "process.down", Severity.CRITICAL if count == 0 else Severity.WARNING, summary,
        observed=count, threshold=wanted, unit="processes", evidence=evidence, cause=cause))


def _service_name(selector: dict[str, str], component: str) -> str:
    """The best guess at the unit name the runbook's `systemctl`/`journalctl` need: the
    process name, the pidfile's stem, the program a cmdline pattern starts with, or
    else the component's own name in the stack file."""
    if "name" in selector:
        return selector["name"]
    if "pidfile" in selector and (stem := Path(selector["pidfile"]).name.removesuffix(".pid")):
        return stem
    if "cmdline" in selector and (word := _PROGRAM.match(selector["cmdline"].lstrip("^"))):
        return Path(word.group()).name
    return component


def fit_growth(samples: list[list[float]]) -> dict[str, float]:
    """Least-squares slope (bytes/s), r² and the share of rising steps of RSS samples."""
    n = len(samples)
    ts, ys = [s[0] for s in samples], [s[1] for s in samples]
    mean_t, mean_y = sum(ts) / n, sum(ys) / n
    var_t = sum((t - mean_t) ** 2 for t in ts)
    cov = sum((t - mean_t) * (y - mean_y) for t, y in zip(ts, ys, strict=True))
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    slope = cov / var_t if var_t > 0 else 0.0
    # A flat series has no variance to explain: r² 0, it is not a trend.
    r2 = (cov * cov) / (var_t * ss_tot) if var_t > 0 and ss_tot > 0 else 0.0
    rising = sum(b[1] > a[1] for a, b in itertools.pairwise(samples)) / (n - 1)
    return {"slope": slope, "r2": r2, "rising": rising}


@probe.rule("process.memory", uses="memory", symptoms=["process.memory.growth"],
            thresholds={"process.memory.growth": Threshold(64 * 1024, 1024 * 1024, unit="B/s")})
def memory_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """RSS growing steadily over the window (good linear fit, mostly rising steps)."""
    fitted = []
    for proc in facts["processes"]:
        if len(proc["samples"]) >= 3:
            fit = fit_growth(proc["samples"])
            steady = fit["slope"] > 0 and fit["r2"] >= MIN_FIT and fit["rising"] >= MIN_RISING
            fitted.append((steady, fit["slope"], fit, proc))
    if not fitted:
        yield ctx.finding("process.memory.growth", Severity.UNKNOWN,
                          "too few RSS samples to fit a trend (the deadline cut the window, or "
                          "the processes exited)", evidence={k: facts[k] for k in
                                                              ("interval_s", "requested",
                                                               "truncated")})
        return
    steady, slope, fit, proc = max(fitted, key=lambda item: (item[0], item[1]))
    rss = [s[1] for s in proc["samples"]]
    window = proc["samples"][-1][0] - proc["samples"][0][0]
    evidence = {
        "pid": proc["pid"], "name": proc["name"], "cmdline": proc["cmdline"],
        "rate_bytes_s": round(slope), "rate_mib_min": round(slope * _MIB_MIN, 3),
        "r2": round(fit["r2"], 3), "rising_steps": round(fit["rising"], 3),
        "first_rss": rss[0], "last_rss": rss[-1], "window_s": round(window, 3),
        "samples": len(rss), "rss_samples": spread(rss), "truncated": facts["truncated"],
        "others": [{"pid": p["pid"], "rate_bytes_s": round(s), "steady": st}
                   for st, s, _f, p in fitted if p is not proc][:EVIDENCE_CAP],
    }
    if not steady:
        yield ctx.finding("process.memory.growth", Severity.OK,
                          f"no steady RSS growth in {len(fitted)} process(es) over "
                          f"{window:.1f}s ({proc['name']} pid {proc['pid']}: "
                          f"{human_bytes(rss[-1])})", observed=0, unit="B/s",
                          threshold=ctx.threshold("process.memory.growth").breached(),
                          evidence=evidence, identity=("name",))
        return
    yield judge(ctx, "process.memory.growth", round(slope),
                f"{proc['name']} (pid {proc['pid']}) RSS grew steadily "
                f"{human_bytes(slope)}/s ({slope * _MIB_MIN:.1f} MiB/min) over {window:.1f}s, "
                f"{human_bytes(rss[0])} → {human_bytes(rss[-1])}",
                cause="a memory leak (objects kept alive by a cache, list or global that "
                      "only grows) or an unbounded queue; confirm over a longer window",
                evidence=evidence, identity=("name",))


@probe.rule("process.port", uses="port", symptoms=["process.port.conflict"])
def port_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Nobody but the matched processes (or their children) listens on the port."""
    port = facts["port"]
    if "error" in facts:
        yield ctx.finding("process.port.conflict", Severity.UNKNOWN,
                          f"cannot tell who holds port {port}: {facts['error']}",
                          evidence=facts, identity=("port",))
        return
    ours = set(facts["matched_pids"])
    foreign = [s for s in facts["listeners"]
               if s["pid"] is None or not ours & {s["pid"], *s["ancestors"]}]
    evidence = {"port": port, "listeners": facts["listeners"][:EVIDENCE_CAP],
                "listener_count": len(facts["listeners"]), "matched_pids": sorted(ours)}
    if not foreign:
        state = "held by the expected process" if facts["listeners"] else "not listened on"
        yield ctx.finding("process.port.conflict", Severity.OK, f"port {port} is {state}",
                          observed=0, evidence=evidence, identity=("port",))
        return
    holder = foreign[0]
    evidence.update(holder_pid=holder["pid"], holder_name=holder["name"],
                    holder_cmdline=holder["cmdline"], address=holder["address"])
    who = (f"pid {holder['pid']} ({holder['cmdline'] or holder['name']})"
           if holder["pid"] is not None else "a process this user cannot see")
    yield applicable_remedy(ctx.finding(
        "process.port.conflict", Severity.CRITICAL if holder["pid"] else Severity.WARNING,
        f"port {port} is held by {who} on {holder['address']}, not by this service",
        observed=len(foreign), evidence=evidence, identity=("port",),
        cause="another program (or a stale copy of this one) bound the port first, so this "
              "service cannot start or starts on another port"))
