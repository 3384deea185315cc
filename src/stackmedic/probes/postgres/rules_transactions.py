"""Rules on sessions and transactions running or open too long (statements, transactions,
prepared transactions)."""

from __future__ import annotations

from collections.abc import Iterable

from stackmedic.checks import Facts, RuleContext
from stackmedic.findings import Finding, Severity
from stackmedic.probes.postgres import probe
from stackmedic.probes.postgres._facts import Row, cannot_judge, session_evidence, sessions, worst
from stackmedic.probes.postgres.queries import ident, quote
from stackmedic.thresholds import Threshold


@probe.rule("postgres.long_running", uses="snapshot", symptoms=["db.query.long_running"],
            thresholds={"db.query.long_running": Threshold(60, 300, unit="s")})
def long_running(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Active statements running longer than the threshold."""
    symptom = "db.query.long_running"
    stop = cannot_judge(facts, ctx, symptom, "activity", needs_sessions=True)
    if stop is not None:
        yield from stop
        return
    # A session waiting on a lock is a victim: db.locks.blocking reports it with the
    # session to end (its head), and a finding here would suggest ending the victim.
    active = [s for s in sessions(facts) if s["state"] == "active" and not s["blocked_by"]]
    yield from worst(
        ctx, symptom, active, lambda s: s["query_age_s"] or 0.0,
        lambda s, age: (f"pid {s['pid']} ({s['application_name'] or 'no app'}) has run for "
                        f"{age:.0f}s: {(s['query'] or '')[:80]}",
                        {**session_evidence(s), "duration_s": round(age, 3)},
                        "a heavy or badly planned query, or one waiting "
                        f"({s['wait_event_type'] or 'not waiting'}) on locks or I/O"),
        identity=("pid",), ok_summary=lambda age: f"no long-running statement "
                                                  f"(longest {age:.0f}s)")


# A session these rules already report, keyed by the prefix of its state: the rule's
# symptom and the age it judges.
_REPORTED_AS = (("idle in transaction", "db.connections.idle_in_transaction", "state_age_s"),
                ("active", "db.query.long_running", "query_age_s"))


def _reported_elsewhere(s: Row, ctx: RuleContext, symptom: str) -> bool:
    """Whether the idle-in-transaction or long-running rule already reports this session at
    least as severely as its transaction's age would: one session, one finding, unless
    the age of its transaction is the worse news (idle 70 s in a transaction open 2 h)."""
    ours = ctx.threshold(symptom).classify(s["xact_age_s"])
    for prefix, other, age in _REPORTED_AS:
        if (s["state"] or "").startswith(prefix):
            theirs = ctx.threshold(other).classify(s[age] or 0.0)
            return theirs is not Severity.OK and theirs.rank >= ours.rank
    return False


def _open_session(s: Row) -> Row:
    app = s["application_name"] or "no app"
    return {**session_evidence(s), "query_age_s": s["query_age_s"],
            "xmin_age": s.get("xmin_age"),
            "holder": f"session {s['pid']} ({app}, role {s['usename']}, from "
                      f"{s['client_addr'] or 'local'})",
            "fix": f"SELECT pg_terminate_backend({s['pid']});",
            "summary": f"pid {s['pid']} ({app}, {s['usename']}, {s['state']}) has kept a "
                       f"transaction open for {s['xact_age_s']:.0f}s; its current statement "
                       f"is {s['query_age_s'] or 0:.0f}s old: {(s['query'] or '')[:80]}",
            "cause": "the application keeps one transaction open across many statements (a "
                     "batch looping in one transaction, a long report in REPEATABLE READ, a "
                     "transaction per request that outlives the request)"}


def _open_prepared(p: Row) -> Row:
    return {"gid": p["gid"], "xid": p["xid"], "usename": p["owner"], "database": p["database"],
            "state": "prepared", "xact_age_s": p["age_s"], "xmin_age": p.get("xmin_age"),
            "holder": f"prepared transaction {quote(p['gid'])} (owner {p['owner']})",
            "fix": f"\\connect {ident(p['database'])}\nROLLBACK PREPARED {quote(p['gid'])};"
                   f"  -- or COMMIT PREPARED {quote(p['gid'])}; if its coordinator committed",
            "summary": f"prepared transaction {quote(p['gid'])} (owner {p['owner']}, database "
                       f"{p['database']}) has been open for {p['age_s']:.0f}s with no session "
                       "to end it",
            "cause": "a two-phase commit whose coordinator crashed or forgot it (PREPARE "
                     "TRANSACTION without COMMIT/ROLLBACK PREPARED); it survives disconnects "
                     "and restarts"}


def _described(t: Row, _age: float) -> tuple[str, Row, str]:
    return t["summary"], {k: v for k, v in t.items() if k not in ("summary", "cause")}, \
        t["cause"]


@probe.rule("postgres.long_transaction", uses="snapshot", symptoms=["db.transaction.long_open"],
            thresholds={"db.transaction.long_open": Threshold(600, 3600, unit="s")})
def long_transaction(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Transactions open too long whatever they run now, and forgotten prepared ones.

    Both hold back the xmin horizon: vacuum cannot remove what was deleted since."""
    symptom = "db.transaction.long_open"
    stop = cannot_judge(facts, ctx, symptom, "activity", needs_sessions=True) or \
        cannot_judge(facts, ctx, symptom, "prepared")
    if stop is not None:
        yield from stop
        return
    # Client backends only (the snapshot leaves out autovacuum and WAL senders), not ours;
    # an aborted transaction has already given up its locks and snapshot; a session
    # waiting on a lock is db.locks.blocking's victim, not the one to end.
    items = [_open_session(s) for s in sessions(facts) if s["xact_age_s"] is not None
             and s["state"] != "idle in transaction (aborted)" and not s["blocked_by"]
             and not _reported_elsewhere(s, ctx, symptom)]
    items += [_open_prepared(p) for p in facts["prepared"]]
    yield from worst(
        ctx, symptom, items, lambda t: t["xact_age_s"], _described,
        identity=("pid", "gid"), ok_summary=lambda age: f"no transaction open too long "
                                                        f"beyond those reported as idle or "
                                                        f"long-running (longest {age:.0f}s)")
