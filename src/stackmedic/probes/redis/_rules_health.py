"""Redis rules about reachability, clients, latency, the slow log, persistence and
replication. They read the `redis.server` facts only."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from stackmedic.checks import Facts, RuleContext
from stackmedic.findings import Finding, Remedy, Severity
from stackmedic.history import since_last_run
from stackmedic.probes.redis import probe
from stackmedic.probes.redis._client import CLIENT_NAME
from stackmedic.probes.redis._derive import (
    as_int,
    cli_command,
    delta,
    latest_info,
    live,
    mapping,
    numbers,
    percentile,
    recent_records,
    records,
    server_now,
    where,
)
from stackmedic.thresholds import Threshold

LINK_DOWN = "cache.replication.link_down"
LAG = "cache.replication.lag"
_MAX_ITEMS = 10

_DOWN_CAUSES = {
    "refused": "nothing listens at the address: redis-server is stopped, crashed, or bound "
               "to another address or port",
    "timeout": "the server or the network did not answer in time: a blackholed route, a "
               "firewall dropping packets, or a server stuck in a long command",
    "loading": "the server is loading its dataset from disk after a restart and refuses "
               "commands until it is done",
    "tls": "the TLS handshake failed: the server's certificate is not signed by a CA we "
           "trust (set tls_ca_file), has expired, or names another host",
    "connection": "the connection failed before Redis answered",
    "error": "the server answered PING with an error",
    "oversized": "the server sent an absurdly large reply: not a Redis server, a broken "
                 "proxy, or a hostile endpoint",
    "oversized_reply": "Redis answered PING and INFO normally, so this is Redis: one reply "
                       "outgrew what stackmedic reads (a key with a huge name in SCAN, very "
                       "many clients in CLIENT LIST)",
}


@probe.rule("redis.availability", uses="server",
            symptoms=["cache.down", "cache.auth.failed", "cache.clients.rejected"])
def availability(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Connection failures become cache.down / cache.auth.failed / cache.clients.rejected."""
    error = facts.get("error")
    evidence = {**where(facts), "user": facts.get("user")}
    if isinstance(error, dict):
        kind, message = str(error.get("kind")), str(error.get("message"))
        evidence |= {"error": message, "error_kind": kind}
        if kind in ("auth", "noperm"):
            evidence["cli_admin"] = cli_command(str(facts.get("target") or ""), as_admin=True)
            yield ctx.finding("cache.auth.failed", Severity.CRITICAL,
                              f"Redis refused user {facts.get('user')!r}: {message}",
                              evidence=evidence, identity=("user",),
                              cause="wrong password, missing or disabled ACL user, or an ACL "
                                    "that denies PING (NOAUTH / WRONGPASS / NOPERM)")
        elif kind == "maxclients":
            yield ctx.finding("cache.clients.rejected", Severity.CRITICAL,
                              f"Redis rejected our connection: {message}",
                              evidence=evidence,
                              cause="every maxclients slot is taken: a connection leak or "
                                    "pools sized above the limit (hypothesis)")
        elif kind == "oversized":
            yield _oversized(facts, ctx, evidence)
        else:
            yield ctx.finding("cache.down", Severity.CRITICAL,
                              f"Redis at {facts.get('target')} unreachable: {message}",
                              evidence=evidence, cause=_DOWN_CAUSES.get(kind))
        return
    info = latest_info(facts) or {}
    if as_int(info.get("loading")):
        yield ctx.finding("cache.down", Severity.CRITICAL,
                          "Redis is loading its dataset and refuses commands",
                          evidence=evidence, cause=_DOWN_CAUSES["loading"])
    else:
        yield ctx.finding("cache.down", Severity.OK,
                          f"Redis {info.get('redis_version', '?')} answers at "
                          f"{facts.get('target')}", evidence=evidence)
    yield ctx.finding("cache.auth.failed", Severity.OK,
                      f"authenticated as {facts.get('user')!r}", evidence=evidence)


def _oversized(facts: Facts, ctx: RuleContext, evidence: dict[str, Any]) -> Finding:
    """Unknown: a reply over the cap. Before INFO it may not be Redis at all; after INFO
    was read it is Redis, and one command's reply (named) was too large to read."""
    error = mapping(facts.get("error"))
    if facts.get("info") is None:  # it answered, but not like Redis: we cannot tell
        return ctx.finding("cache.down", Severity.UNKNOWN,
                           f"Redis at {facts.get('target')} could not be checked: "
                           f"{error.get('message')}", evidence=evidence,
                           cause=_DOWN_CAUSES["oversized"])
    command = error.get("command") or "a command"
    cli = evidence["cli"]
    steps: tuple[str, ...] = (
        f"Find what makes the reply to {command} so large: the largest keys with `{cli} "
        f"--bigkeys`, overlong key names with `{cli} --scan | awk 'length > 1048576'`, the "
        f"number of clients with `{cli} INFO clients`.",)
    if command == "SCAN":
        steps += (f"Rename or delete the key with the huge name, or set `max_keys: 0` on "
                  f"component {ctx.component} to skip the key sample.",)
    return ctx.finding(
        "cache.down", Severity.UNKNOWN,
        f"Redis {mapping(facts['info']).get('redis_version', '?')} at {facts.get('target')} "
        f"answers, but its reply to {command} was too large to read ({error.get('message')}); "
        "the checks after it did not run", evidence=evidence | {"command": command},
        cause=_DOWN_CAUSES["oversized_reply"], remedy=Remedy("cache.down", steps))


@probe.rule("redis.clients", uses="server",
            symptoms=["cache.clients.rejected", "cache.clients.blocked"],
            thresholds={"cache.clients.rejected": Threshold(0.80, 0.95, unit="ratio"),
                        "cache.clients.blocked": Threshold(5, 50, unit="clients")})
def clients(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Connections against maxclients, rejections during the run, blocked clients."""
    info = latest_info(facts) if live(facts) else None
    if info is None:
        return
    connected, maxclients = as_int(info.get("connected_clients")), as_int(
        info.get("maxclients") or mapping(facts.get("config")).get("maxclients"))
    rejected = delta(facts, "rejected_connections")
    evidence: dict[str, Any] = {
        **where(facts), "connected": connected, "maxclients": maxclients,
        "rejected_during_interval": rejected,
        "rejected_total": as_int(info.get("rejected_connections")),
        "interval_s": facts.get("interval_s")}
    earlier = since_last_run(facts, "rejected_connections")
    if earlier is not None:
        evidence.update(rejected_since_last_run=int(earlier.delta),
                        previous_run=earlier.previous_at)
    if connected is not None and maxclients:
        ratio = round(connected / maxclients, 4)
        if rejected:
            yield ctx.finding("cache.clients.rejected", Severity.CRITICAL,
                              f"{rejected} connections rejected during the sample; "
                              f"{connected}/{maxclients} clients", observed=ratio, unit="ratio",
                              evidence=evidence,
                              cause="maxclients is reached: clients are refused right now")
        elif earlier is not None and earlier.delta and \
                ctx.threshold("cache.clients.rejected").classify(ratio) is Severity.OK:
            yield ctx.finding("cache.clients.rejected", Severity.WARNING,
                              f"{int(earlier.delta)} connections rejected since the last run "
                              f"({earlier.previous_at}); {connected}/{maxclients} clients now",
                              observed=ratio, unit="ratio", evidence=evidence,
                              cause="maxclients was reached between runs: a burst of "
                                    "connections (a deploy, a retry storm) or a leak that "
                                    "has since been cleared")
        else:
            yield ctx.judge("cache.clients.rejected", ratio,
                            f"{connected}/{maxclients} clients connected; "
                            f"{evidence['rejected_total']} rejected since start",
                            evidence=evidence,
                            cause="connections pile up towards maxclients: a leak, or pools "
                                  "sized above the limit (hypothesis)")
    blocked = as_int(info.get("blocked_clients"))
    if blocked is not None:
        shown = records(facts.get("blocked"))
        commands = sorted({str(c.get("cmd")) for c in shown})
        yield ctx.judge("cache.clients.blocked", blocked,
                        f"{blocked} clients blocked"
                        f"{' in ' + ', '.join(commands) if commands else ''}",
                        evidence={**where(facts), "blocked": blocked,
                                  "clients": shown[:_MAX_ITEMS],
                                  "commands": ", ".join(commands)},
                        cause="clients wait in BLPOP/BRPOP/XREAD/WAIT for data nobody "
                              "produces: a stopped producer or an empty queue (hypothesis)")


@probe.rule("redis.slowlog", uses="server", symptoms=["cache.slowlog"],
            thresholds={"cache.slowlog": Threshold(3, 30, unit="entries")})
def slowlog(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Slow-log entries in the window: command name, duration, client (no arguments)."""
    if not live(facts):
        return
    entries = facts.get("slowlog")
    config = mapping(facts.get("config"))
    if not isinstance(entries, list):
        yield ctx.finding("cache.slowlog", Severity.UNKNOWN,
                          f"SLOWLOG GET not readable as user {facts.get('user')!r}",
                          evidence={**where(facts), "denied": facts.get("denied")})
        return
    window = float(getattr(ctx.config, "slowlog_window_s", 600.0))
    in_window = recent_records(facts, "slowlog", window)
    # Our own connection (CLIENT SETNAME stackmedic) is not the application: with a low
    # slowlog-log-slower-than, earlier runs' INFO/SCAN/MEMORY USAGE would be counted.
    recent = sorted((e for e in in_window if e.get("client_name") != CLIENT_NAME),
                    key=lambda e: -(as_int(e.get("duration_us")) or 0))
    slowest = recent[0] if recent else {}
    evidence = {**where(facts), "entries": recent[:_MAX_ITEMS],
                "own_entries": len(in_window) - len(recent), "window_s": window,
                "slower_than_us": config.get("slowlog-log-slower-than"),
                "slowest_command": slowest.get("command"),
                "slowest_ms": round((as_int(slowest.get("duration_us")) or 0) / 1000, 3)}
    worst = (f"; slowest {slowest.get('command')} {evidence['slowest_ms']:g} ms from "
             f"{slowest.get('client')}" if slowest else "")
    yield ctx.judge("cache.slowlog", len(recent),
                    f"{len(recent)} slow-log entries in the last {window:g}s{worst}",
                    evidence=evidence,
                    cause="commands with O(N) cost on large keys (KEYS, SMEMBERS, HGETALL, "
                          "LRANGE 0 -1, SORT) or Lua scripts block every other client while "
                          "they run (hypothesis)")


@probe.rule("redis.latency", uses="server", symptoms=["cache.latency.high"],
            thresholds={"cache.latency.high": Threshold(20.0, 200.0, unit="ms")})
def latency(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Round-trip p50/p95 from timed PINGs, plus recent LATENCY LATEST spikes."""
    if not live(facts):
        return
    samples = numbers(facts.get("rtt_ms"))
    p50, p95 = percentile(samples, 0.5), percentile(samples, 0.95)
    window = float(getattr(ctx.config, "slowlog_window_s", 600.0))
    events = sorted(recent_records(facts, "latency", window),
                    key=lambda e: -(as_int(e.get("latest_ms")) or 0))[:_MAX_ITEMS]
    spike = as_int(events[0].get("latest_ms")) if events else None
    if p50 is None and spike is None:
        return
    observed = max(p50 or 0.0, float(spike or 0))
    evidence = {**where(facts), "rtt_p50_ms": p50, "rtt_p95_ms": p95,
                "samples": len(samples),
                "events": events, "worst_event": events[0].get("event") if events else None,
                "monitor_threshold_ms": mapping(facts.get("config")).get(
                    "latency-monitor-threshold")}
    spike_text = (f"; latency monitor: {events[0].get('event')} {spike} ms" if events else "")
    yield ctx.judge("cache.latency.high", observed,
                    f"round trip p50 {p50 or 0:.2f} ms, p95 {p95 or 0:.2f} ms{spike_text}",
                    evidence=evidence,
                    cause="slow commands, fork for RDB/AOF rewrite, swapping or an overloaded "
                          "host delay every reply (hypothesis; LATENCY DOCTOR says which)")


@probe.rule("redis.persistence", uses="server", symptoms=["cache.persistence.failing"],
            thresholds={"cache.persistence.failing": Threshold(3 * 3600, 24 * 3600,
                                                               unit="s")})
def persistence(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Last BGSAVE / AOF write status, and how old the last good save is when changes wait."""
    info = latest_info(facts) if live(facts) else None
    if info is None:
        return
    config = mapping(facts.get("config"))
    last_save = as_int(info.get("rdb_last_save_time"))
    age = int(server_now(facts)) - last_save if last_save else None
    changes = as_int(info.get("rdb_changes_since_last_save")) or 0
    evidence = {**where(facts), "dir": config.get("dir", "<dir>"),
                # shell-quoted for the runbook's commands: a path may hold spaces
                "dir_arg": shlex.quote(str(config.get("dir", "<dir>"))),
                "dbfilename": config.get("dbfilename"),
                "save": config.get("save"), "appendonly": config.get("appendonly"),
                "rdb_last_bgsave_status": info.get("rdb_last_bgsave_status"),
                "aof_last_write_status": info.get("aof_last_write_status"),
                "aof_last_bgrewrite_status": info.get("aof_last_bgrewrite_status"),
                "last_save_age_s": age, "changes_since_last_save": changes}
    failed = [name for name in ("rdb_last_bgsave_status", "aof_last_write_status",
                                "aof_last_bgrewrite_status") if info.get(name) == "err"]
    if failed:
        yield ctx.finding("cache.persistence.failing", Severity.CRITICAL,
                          f"{', '.join(failed)} = err; last good save "
                          f"{f'{age}s ago' if age is not None else 'time unknown'}, "
                          f"{changes} changes not on disk", observed=age, unit="s",
                          evidence=evidence, identity=("dir",),
                          cause=f"Redis cannot write to {evidence['dir']}: permissions, a "
                                "read-only or full filesystem, or fork failing for lack of "
                                "memory (the server log says which)")
    elif config.get("save") and changes and age is not None:
        yield ctx.judge("cache.persistence.failing", age,
                        f"last good save {age}s ago with {changes} changes pending",
                        evidence=evidence)
    else:
        yield ctx.finding("cache.persistence.failing", Severity.OK,
                          "no failed save" + ("" if config.get("save") or
                                              config.get("appendonly") == "yes"
                                              else " (persistence is off)" if config
                                              else " (CONFIG GET unreadable: save settings "
                                                   "unknown)"),
                          observed=age, unit="s", evidence=evidence)


@probe.rule("redis.replication", uses="server", symptoms=[LINK_DOWN, LAG],
            thresholds={LAG: Threshold(10.0, 60.0, unit="s")})
def replication(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """A replica's link to its master; on a master, each replica's state and lag."""
    info = latest_info(facts) if live(facts) else None
    if info is None:
        return
    if info.get("role") == "slave":
        master = f"{info.get('master_host')}:{info.get('master_port')}"
        evidence = {**where(facts), "role": "replica", "master": master,
                    "master_host": info.get("master_host"),
                    "master_port": as_int(info.get("master_port")),
                    "master_link_status": info.get("master_link_status"),
                    "down_since_s": as_int(info.get("master_link_down_since_seconds")),
                    "sync_in_progress": as_int(info.get("master_sync_in_progress"))}
        if info.get("master_link_status") != "up":
            yield ctx.finding(LINK_DOWN, Severity.CRITICAL,
                              f"replica's link to master {master} is down "
                              f"(for {evidence['down_since_s']}s)", evidence=evidence,
                              identity=("master",),
                              cause="the master is unreachable from this replica: stopped, "
                                    "network cut, or authentication (masterauth) rejected; the "
                                    "replica serves stale data")
        return
    replicas = records(info.get("replicas"))
    if not replicas:
        return
    offset = as_int(info.get("master_repl_offset")) or 0
    rows: list[dict[str, Any]] = [
        {"replica": f"{r.get('ip')}:{r.get('port')}", "state": r.get("state"),
         "lag_s": as_int(r.get("lag")) or 0,
         "bytes_behind": max(0, offset - (as_int(r.get("offset")) or 0))} for r in replicas]
    worst = max(rows, key=lambda r: int(r["lag_s"]))
    severity = ctx.threshold(LAG).classify(worst["lag_s"])
    yield ctx.judge(LAG, worst["lag_s"],
                    f"{len(rows)} replicas; worst {worst['replica']} {worst['lag_s']}s since "
                    f"its last ack, {worst['bytes_behind']} bytes behind",
                    evidence={**where(facts), "role": "master", "replicas": rows,
                              **worst},
                    identity=("replica",) if severity is not Severity.OK else (),
                    cause="the replica cannot keep up or stopped acknowledging: a slow or "
                          "paused replica, a saturated network, or a big write burst")
