"""Helpers the postgres rules share: reading the snapshot, unknowns, worst-N findings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from stackmedic.checks import Facts, RuleContext
from stackmedic.findings import Finding, Remedy, Severity
from stackmedic.probes.postgres.queries import ident

__all__ = ["Row", "can_see_sessions", "cannot_judge", "connection_slots", "not_readable",
           "sessions", "worst"]

Row = dict[str, Any]
MAX_FINDINGS = 5  # per rule and run: the worst few; the rest are counted in evidence
_PRIVILEGE = "42501"


def sessions(facts: Facts) -> list[Row]:
    """Client sessions of the snapshot other than stackmedic's own."""
    own = (facts.get("server") or {}).get("own_pid")
    return [s for s in (facts.get("activity") or {}).get("sessions", []) if s["pid"] != own]


def connection_slots(facts: Facts) -> tuple[int, int, int]:
    """(max_connections, the slots reserved for superusers and pg_use_reserved_connections,
    the slots left to ordinary clients: at least 1) from the snapshot's settings."""
    settings = facts["server"]["settings"]
    reserved = sum(int(settings.get(k, 0)) for k in
                   ("superuser_reserved_connections", "reserved_connections"))
    max_connections = int(settings["max_connections"])
    return max_connections, reserved, max(1, max_connections - reserved)


def can_see_sessions(facts: Facts) -> bool:
    """Whether other roles' session details are visible (superuser or pg_read_all_stats)."""
    server = facts.get("server") or {}
    return bool(server.get("superuser") or server.get("pg_read_all_stats"))


def not_readable(facts: Facts, ctx: RuleContext, symptom: str, section: str,
                 *, needs_sessions: bool = False) -> Finding | None:
    """An `unknown` finding if `section` of the snapshot could not be read, naming the
    GRANT that would fix it; None when the rule can judge."""
    user = facts["target"]["user"]
    error = (facts.get("errors") or {}).get(section)
    grant = f"GRANT pg_monitor TO {user};"
    if error is None and needs_sessions and not can_see_sessions(facts):
        error = {"sqlstate": _PRIVILEGE,
                 "message": "other roles' sessions show <insufficient privilege>"}
    if error is None and facts.get(section) is not None:
        return None
    error = error or {"sqlstate": None, "message": f"{section} was not collected"}
    privilege = error["sqlstate"] == _PRIVILEGE
    why = "it lacks the privilege" if privilege else "the query failed"
    # The symptom's runbook fixes the symptom, which was not seen: the remedy of an
    # unknown is whatever lets the check run.
    step = (f"Let role {user} read the statistics (as a superuser): `{grant}`" if privilege
            else "Run the check again; if the statistics query keeps failing or timing out, "
                 "raise the component's `statement_timeout_ms` and `timeout`, and read the "
                 "server log for the error above.")
    return ctx.finding(
        symptom, Severity.UNKNOWN,
        f"cannot check {symptom}: {why} ({error['message']})",
        evidence={"section": section, "user": user, "grant": grant, **error},
        identity=("section",), remedy=Remedy(symptom, (step,)),
        cause=f"role {user!r} cannot read {section}; `{grant}` would let it"
        if privilege else "the statistics query failed or timed out")


def cannot_judge(facts: Facts, ctx: RuleContext, symptom: str, section: str, *,
                 needs_sessions: bool = False) -> list[Finding] | None:
    """None if the rule can judge; otherwise the findings to return instead: nothing when
    the server is unreachable (the availability rule says so), else one `unknown`."""
    if not facts["connected"]:
        return []
    unknown = not_readable(facts, ctx, symptom, section, needs_sessions=needs_sessions)
    return None if unknown is None else [unknown]


def worst(ctx: RuleContext, symptom: str, items: Iterable[Row], value: Callable[[Row], float],
          describe: Callable[[Row, float], tuple[str, Row, str]], *,
          identity: tuple[str, ...], ok_summary: Callable[[float], str]) -> Iterator[Finding]:
    """One finding per item over the threshold (worst first, at most MAX_FINDINGS), or a
    single `ok` finding carrying the largest value seen."""
    threshold = ctx.threshold(symptom)
    ranked = sorted(items, key=value, reverse=threshold.direction == "above")
    bad = [item for item in ranked if threshold.classify(value(item)) is not Severity.OK]
    for item in bad[:MAX_FINDINGS]:
        summary, evidence, cause = describe(item, value(item))
        if len(bad) > MAX_FINDINGS:
            evidence = {**evidence, "others_over_threshold": len(bad) - MAX_FINDINGS}
        yield ctx.judge(symptom, value(item), summary, evidence=evidence,
                        identity=identity, cause=cause)
    if not bad:
        top = value(ranked[0]) if ranked else 0.0
        yield ctx.judge(symptom, top, ok_summary(top), evidence={"checked": len(ranked)})


def session_evidence(s: Row) -> Row:
    """What a finding about one session shows of it."""
    return {"pid": s["pid"], "application_name": s["application_name"], "usename": s["usename"],
            "usename_sql": ident(s["usename"]) if s["usename"] else None,
            "client_addr": s["client_addr"], "state": s["state"], "database": s["datname"],
            "query": s["query"], "xact_age_s": s["xact_age_s"], "state_age_s": s["state_age_s"],
            "wait_event": s["wait_event"], "xmin_age": s.get("xmin_age")}
