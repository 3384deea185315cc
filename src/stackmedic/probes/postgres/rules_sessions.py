"""Rules over the sessions of the snapshot: slots, idle sessions, locks, deadlocks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from stackmedic.checks import Facts, RuleContext
from stackmedic.findings import Finding
from stackmedic.history import CounterChange, previous_counters
from stackmedic.probes.postgres import PostgresComponent, probe
from stackmedic.probes.postgres._facts import (
    Row,
    cannot_judge,
    connection_slots,
    not_readable,
    session_evidence,
    sessions,
    worst,
)
from stackmedic.probes.postgres.queries import ident, quote
from stackmedic.thresholds import Threshold


@probe.rule("postgres.connections", uses="snapshot", symptoms=["db.connections.exhausted"],
            thresholds={"db.connections.exhausted": Threshold(0.80, 0.95, unit="ratio")})
def connections(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Connections in use against max_connections minus the reserved slots, by holder."""
    symptom = "db.connections.exhausted"
    if not facts["connected"]:
        if facts["error"]["kind"] == "too_many":
            # Nobody can be asked who holds the slots, so the remedy addresses them all.
            yield ctx.judge(symptom, 1.0, "no connection slot left: the server answered "
                            "'too many clients'", evidence={
                                **facts["target"], **facts["error"],
                                "holder": "every client: the server was too full to say who "
                                          "holds the slots (list them first as a superuser, "
                                          "who still has the reserved slots)",
                                "holder_filter": "backend_type = 'client backend'",
                                "usable_slots": "max_connections minus "
                                                "superuser_reserved_connections"},
                            identity=("host", "port"),
                            cause="every slot is taken; a connection leak or pools sized "
                                  "larger than max_connections (hypothesis)")
        return
    unknown = not_readable(facts, ctx, symptom, "activity")
    if unknown:
        yield unknown
        return
    max_connections, reserved, available = connection_slots(facts)
    in_use = facts["activity"]["total"]
    hidden = facts["activity"].get("hidden", 0)
    groups = Counter((s["application_name"] or "", s["usename"] or "",
                      s["client_addr"] or ("(hidden)" if s.get("hidden") else "local"))
                     for s in sessions(facts))  # our own slot counts, but is nobody's leak
    top = [{"application_name": a, "usename": u, "client_addr": c, "count": n}
           for (a, u, c), n in groups.most_common(5)]
    head = top[0] if top else {"application_name": "", "usename": "", "client_addr": "",
                               "count": 0}
    states = Counter(s["state"] or "unknown" for s in facts["activity"]["sessions"])
    ratio = in_use / available
    app, user = str(head["application_name"]), str(head["usename"])
    evidence = {"in_use": in_use, "max_connections": max_connections, "reserved": reserved,
                "available": available, "top_application": app,
                "top_user": head["usename"], "top_client": head["client_addr"],
                "top_count": head["count"], "holders": top, "states": dict(states),
                "holder": f"{app or '(no application_name)'} as {user}",
                "holder_filter": f"backend_type = 'client backend' AND application_name = "
                                 f"{quote(app)} AND usename = {quote(user)}",
                "usable_slots": f"{available} (max_connections {max_connections} minus "
                                f"{reserved} reserved)"}
    if hidden:  # counted, but their state and client need pg_read_all_stats
        evidence.update(hidden_sessions=hidden,
                        grant=f"GRANT pg_monitor TO {facts['target']['user']};")
    yield ctx.judge(
        symptom, round(ratio, 4),
        f"{in_use} of {available} connection slots in use ({ratio:.0%}); most held by "
        f"{app or '(no application_name)'} as {head['usename']} from "
        f"{head['client_addr']} ({head['count']})", evidence=evidence,
        identity=("max_connections",),
        cause="sessions are not returned (a leak), or pool size times instances exceeds "
              "max_connections (hypothesis: check the top holder first)")


@probe.rule("postgres.idle_in_transaction", uses="snapshot",
            symptoms=["db.connections.idle_in_transaction"],
            thresholds={"db.connections.idle_in_transaction": Threshold(60, 600, unit="s")})
def idle_in_transaction(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Sessions that opened a transaction and went quiet, holding locks and old snapshots."""
    symptom = "db.connections.idle_in_transaction"
    stop = cannot_judge(facts, ctx, symptom, "activity", needs_sessions=True)
    if stop is not None:
        yield from stop
        return
    idle = [s for s in sessions(facts) if (s["state"] or "").startswith("idle in transaction")]
    yield from worst(
        ctx, symptom, idle, lambda s: s["state_age_s"] or 0.0,
        lambda s, age: (f"pid {s['pid']} ({s['application_name'] or 'no app'}, "
                        f"{s['usename']}) idle in transaction for {age:.0f}s after: "
                        f"{(s['query'] or '')[:80]}", session_evidence(s),
                        "the application began a transaction and neither committed nor "
                        "rolled back (missing commit, an exception path, or a slow external "
                        "call inside the transaction)"),
        identity=("pid",), ok_summary=lambda age: f"no session idle in transaction "
                                                  f"(longest {age:.0f}s)")


@probe.rule("postgres.idle_leak", uses="snapshot", symptoms=["db.connections.idle_leak"],
            thresholds={"db.connections.idle_leak": Threshold(0.25, 0.50, unit="ratio")})
def idle_leak(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Long-idle sessions from one client, as a share of the available slots."""
    symptom = "db.connections.idle_leak"
    stop = cannot_judge(facts, ctx, symptom, "activity", needs_sessions=True)
    if stop is not None:
        yield from stop
        return
    config = ctx.config
    assert isinstance(config, PostgresComponent)
    _, _, available = connection_slots(facts)
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for s in sessions(facts):
        if s["state"] == "idle" and (s["state_age_s"] or 0) >= config.idle_leak_age_s:
            key = (s["client_addr"] or "local", s["application_name"] or "", s["usename"] or "")
            groups.setdefault(key, []).append(s)
    items = [{"client_addr": c, "application_name": a, "usename": u, "usename_sql": ident(u),
              "count": len(group),
              "session_filter": " AND ".join((
                  "client_addr IS NULL" if c == "local" else f"client_addr = {quote(c)}",
                  f"application_name = {quote(a)}", f"usename = {quote(u)}")),
              "available": available, "idle_age_s": config.idle_leak_age_s,
              "oldest_idle_s": max(s["state_age_s"] for s in group),
              "pids": [s["pid"] for s in group][:10]}
             for (c, a, u), group in groups.items()]
    yield from worst(
        ctx, symptom, items, lambda g: g["count"] / available,
        lambda g, ratio: (f"{g['count']} sessions from {g['client_addr']} "
                          f"({g['application_name'] or 'no app'}, {g['usename']}) idle for "
                          f"over {g['idle_age_s']:.0f}s: {ratio:.0%} of the slots", g,
                          "the client opens connections and never closes them (a leak), or "
                          "its pool keeps far more idle connections than it uses "
                          "(hypothesis)"),
        identity=("client_addr", "application_name", "usename"),
        ok_summary=lambda r: f"no client holds many long-idle sessions (largest {r:.0%})")


def _heads(waiting: dict[int, list[int]]) -> dict[int, tuple[list[int], int]]:
    """Each blocked pid → (its chain of blockers, the head of that chain). The head is
    the first blocker that is not itself waiting; in a cycle (a deadlock the detector
    has not broken yet) it is the lowest pid of the chain, so all members agree."""
    out = {}
    for pid in waiting:
        chain, seen = [pid], {pid}
        while chain[-1] in waiting:
            nxt = [b for b in waiting[chain[-1]] if b not in seen]
            if not nxt:
                break
            chain.append(min(nxt))
            seen.add(chain[-1])
        out[pid] = (chain, chain[-1] if chain[-1] not in waiting else min(chain))
    return out


def _end_head(pid: int, state: str | None, prepared: list[Row]) -> str:
    """One line of SQL that ends the head of a chain. Cancelling ends only a running
    statement: a session idle in transaction keeps its locks, so only terminating helps;
    a forgotten prepared transaction has no backend and is rolled back by gid."""
    if pid == 0:
        if not prepared:
            return ("SELECT gid, prepared, owner, database FROM pg_prepared_xacts;  -- then "
                    "ROLLBACK PREPARED the one holding the lock")
        databases = sorted({p["database"] for p in prepared})
        return " ".join(f"ROLLBACK PREPARED {quote(p['gid'])};" for p in prepared) + (
            f"  -- in database {databases[0]}" if len(databases) == 1
            else "  -- each in its own database (see head_prepared)")
    if state in ("active", None):  # None: not a client session (autovacuum…): cancel first
        return (f"SELECT pg_cancel_backend({pid});  -- if it still blocks: "
                f"SELECT pg_terminate_backend({pid});")
    return f"SELECT pg_terminate_backend({pid});"


@probe.rule("postgres.locks", uses="snapshot", symptoms=["db.locks.blocking"],
            thresholds={"db.locks.blocking": Threshold(5, 60, unit="s")})
def blocking(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Sessions waiting on locks, grouped by the head of their chain of blockers."""
    symptom = "db.locks.blocking"
    stop = cannot_judge(facts, ctx, symptom, "activity", needs_sessions=True) or \
        cannot_judge(facts, ctx, symptom, "locks")
    if stop is not None:
        yield from stop
        return
    by_pid = {s["pid"]: s for s in sessions(facts)}
    waiting = {pid: s["blocked_by"] for pid, s in by_pid.items() if s.get("blocked_by")}
    lock_of: dict[int, Row] = {}
    for lock in sorted(facts["locks"], key=lambda lk: lk["granted"]):  # waited-for lock first
        lock_of.setdefault(lock["pid"], {})
        for key in ("mode", "locktype", "relation", "wait_s"):
            if lock_of[lock["pid"]].get(key) is None and lock.get(key) is not None:
                lock_of[lock["pid"]][key] = lock[key]
    groups: dict[int, list[list[int]]] = {}
    for chain, head in _heads(waiting).values():
        groups.setdefault(head, []).append(chain)
    items = []
    for head, chains in groups.items():
        blocked = []
        for chain in sorted(chains, key=len):
            s, lock = by_pid[chain[0]], lock_of.get(chain[0], {})
            blocked.append({"pid": chain[0], "application_name": s["application_name"],
                            "query": s["query"], "mode": lock.get("mode"),
                            "relation": lock.get("relation"),
                            "wait_s": lock.get("wait_s") or s["query_age_s"] or 0.0,
                            "chain": chain})
        first = max(blocked, key=lambda b: b["wait_s"])
        h = by_pid.get(head, {})
        app = h.get("application_name") if h else "(not a client session)"
        prepared: list[Row] = []
        if head == 0:  # a prepared transaction: no backend to cancel or terminate
            pids = {b["pid"] for b in blocked}
            xids = {lk.get("xid") for lk in facts["locks"] if lk["pid"] in pids
                    and not lk["granted"] and lk.get("xid")}
            every = facts.get("prepared") or []
            prepared = [p for p in every if p["xid"] in xids] or every
            app = "(prepared transaction " + (", ".join(repr(p["gid"]) for p in prepared[:3])
                                              or "?") + ")"
        items.append({"head_pid": head, "head_application": app or "(no application_name)",
                      "head_fix": _end_head(head, h.get("state"), prepared[:3]),
                      "head_prepared": prepared[:3],
                      "head_state": h.get("state"), "head_query": h.get("query"),
                      "head_xact_age_s": h.get("xact_age_s"), "blocked_pid": first["pid"],
                      "blocked_query": first["query"], "lock_mode": first["mode"],
                      "relation": first["relation"], "wait_s": first["wait_s"],
                      "chain": max((b["chain"] for b in blocked), key=len),
                      "blocked_count": len(blocked), "blocked": blocked[:10]})
    yield from worst(
        ctx, symptom, items, lambda g: g["wait_s"],
        lambda g, wait: (f"pid {g['head_pid']} ({g['head_application'] or 'no app'}, "
                         f"{g['head_state']}) blocks {g['blocked_count']} session(s) for up "
                         f"to {wait:.1f}s ({g['lock_mode']} on {g['relation'] or 'a row'})", g,
                         "the head blocker holds locks in a long or abandoned transaction "
                         "(often idle in transaction) while others need the same rows"),
        identity=("head_pid",), ok_summary=lambda w: "no session waits on a lock")


@probe.rule("postgres.deadlocks", uses="snapshot", symptoms=["db.deadlocks"],
            thresholds={"db.deadlocks": Threshold(1, 10, unit="deadlocks")})
def deadlocks(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Deadlocks since the previous run (the doctor's history), else between the two
    samples of this run."""
    symptom = "db.deadlocks"
    if (stop := cannot_judge(facts, ctx, symptom, "deadlocks")) is not None:
        yield from stop
        return
    d = facts["deadlocks"]
    evidence = {**d, "new": d["after"] - d["before"],
                "deadlock_timeout": facts["server"]["settings"].get("deadlock_timeout")}
    since = f"statistics reset at {d['stats_reset']}" if d["stats_reset"] else "statistics began"
    change = _deadlocks_since_last_run(facts)
    if change is None:
        count = evidence["new"]
        summary = f"{count} deadlock(s) in {d['interval_s']:.2f}s ({d['after']} since {since})"
    else:
        count = evidence["new"] = int(change.delta)
        evidence.update(previous_run=change.previous_at, since_last_run_s=round(change.seconds))
        summary = (f"{count} deadlock(s) since the last run, {_duration(change.seconds)} ago "
                   f"({d['after']} since {since})")
    yield ctx.judge(symptom, count, summary, evidence=evidence,
                    cause="transactions take the same locks in different orders "
                          "(see the server log for the statements of each deadlock)")


def _deadlocks_since_last_run(facts: Facts) -> CounterChange | None:
    """Deadlocks since the previous run, database by database: one created or reset
    since (a key the previous run lacks) or whose count went back counts all it has,
    and one dropped counts nothing, so a dropped database hides no other deadlock."""
    found = previous_counters(facts)
    if found is None:
        return None
    old, span = found
    total = 0
    for key, count in facts["counters"].items():
        if key.startswith("deadlocks:"):
            before = old.get(key)
            total += count - before if type(before) is int and before <= count else count
    return replace(span, delta=total)


def _duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


