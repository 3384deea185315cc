"""Component kind `eventstore`: integrity, projection lag, latency and conflicts of an
event store (ours on SQLite/PostgreSQL, or a mapped `eventsourcing`/Message DB table).

    events: {kind: eventstore, dsn: "sqlite:///./events.db", projections: [orders]}
    legacy: {kind: eventstore, dsn: "postgresql://…", schema: eventsourcing,
             table: dogschool_events}

The integrity collector is the expensive one (a full SQL-side scan, ~seconds per
million events); set `integrity: false` to skip it on large stores and run
`stackmedic events scan` off-peak instead. Lag, latency and conflicts need our schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stackmedic import redact
from stackmedic.checks import CollectContext, Facts, Probe, RuleContext
from stackmedic.config import ComponentBase
from stackmedic.findings import Finding, Severity
from stackmedic.thresholds import Threshold

_SAMPLES = 10


class EventstoreTolerances(BaseModel):
    """How far event clocks may be off before a timestamp counts as wrong."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    future_seconds: float = Field(300, ge=0, description="allowed time ahead of now")
    ancient_days: float = Field(7300, gt=0, description="older than this is absurd")
    disorder_seconds: float = Field(60, ge=0, description="allowed clock skew between writers")


class EventstoreComponent(ComponentBase):
    """A stack-file entry: `{kind: eventstore, dsn: "sqlite:///events.db"}`."""

    dsn: str = Field(..., description="sqlite:///file.db or postgresql://…")
    schema_kind: Literal["stackmedic", "eventsourcing", "messagedb"] = Field(
        "stackmedic", alias="schema", description="whose table layout to scan")
    table: str | None = Field(None, description="event table (eventsourcing: <app>_events)")
    prefix: str = Field("es_", description="table prefix of a stackmedic store")
    projections: list[str] = Field(default_factory=list,
                                   description="checkpoint names to watch (default: all)")
    stall_after: float = Field(300, gt=0, description="seconds a checkpoint may stay still "
                               "while events arrive")
    integrity: bool = Field(True, description="run the full integrity scan")
    tolerances: EventstoreTolerances = Field(default_factory=EventstoreTolerances)
    schemas: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                               description="JSON Schema per event type")


probe = Probe("eventstore", EventstoreComponent,
              description="an event store: integrity, projection lag, latency, conflicts")


def _mapping(component: EventstoreComponent) -> Any:
    from dataclasses import replace

    from stackmedic.eventstore import integrity
    from stackmedic.eventstore._dsn import is_sqlite

    if component.schema_kind == "eventsourcing":
        return integrity.eventsourcing_mapping(component.table or "stored_events",
                                               sqlite=is_sqlite(component.dsn))
    mapping = (integrity.MESSAGE_DB if component.schema_kind == "messagedb"
               else integrity.stackmedic_mapping(component.prefix))
    return replace(mapping, table=component.table) if component.table else mapping


def _shown_dsn(dsn: str) -> str:
    """The DSN the runbooks' `stackmedic events … --dsn` commands get: usable as it is
    (no password, an absolute SQLite path) and redacted all the same."""
    from stackmedic.eventstore._dsn import command_dsn

    return redact.redact_text(command_dsn(dsn))


def _failure(err: Exception) -> Facts:
    return {"error": redact.redact_text(f"{type(err).__name__}: {err}")[:500]}


def _unknown(ctx: RuleContext, symptom: str, summary: str, error: str) -> Finding:
    """An unknown verdict whose remedy is the could-not-run runbook's: the runbook of
    `symptom` would tell the user to repair streams that nobody could read."""
    finding = ctx.finding(symptom, Severity.UNKNOWN, summary, evidence={"error": error},
                          identity=("error",))
    return _with_steps(finding, "stackmedic.check.failed")


def _with_steps(finding: Finding, runbook: str, cases: tuple[str, ...] = ()) -> Finding:
    """`finding` with the Fix steps of `runbook`; with `cases`, only the steps labelled
    with one of them (`Deleted events: …`), those that fit what the scan saw."""
    from dataclasses import replace

    from stackmedic.findings import Remedy
    from stackmedic.runbooks import fill, fix_steps, load_runbook

    steps = tuple(fill(step, finding) for step in fix_steps(load_runbook(runbook))
                  if not cases or step.startswith(tuple(f"{case}:" for case in cases)))
    return replace(finding, remedy=Remedy(runbook=runbook, steps=steps))


@probe.collector("integrity", timeout=60.0)
def integrity(component: EventstoreComponent, ctx: CollectContext) -> Facts | None:
    """Full SQL-side scan for gaps, repeats, duplicates, bad payloads and bad times."""
    if not component.integrity:
        return None
    from datetime import timedelta

    from stackmedic.eventstore._dsn import is_sqlite
    from stackmedic.eventstore.integrity import Tolerances, scan

    tol = component.tolerances
    try:
        report = scan(component.dsn, _mapping(component), schemas=component.schemas,
                      tolerances=Tolerances(timedelta(seconds=tol.future_seconds),
                                            timedelta(days=tol.ancient_days),
                                            timedelta(seconds=tol.disorder_seconds)),
                      statement_timeout=max(1.0, ctx.remaining()))
    except Exception as err:  # unreachable store or missing table: a fact, not a crash
        return _failure(err)
    mapping = _mapping(component)
    return {"dsn": _shown_dsn(component.dsn), "table": mapping.table,
            "backend": "sqlite" if is_sqlite(component.dsn) else "postgresql",
            "schema": component.schema_kind, "stream_column": mapping.stream,
            "version_column": mapping.version, "event_id_column": mapping.event_id,
            **report.to_dict()}


@probe.collector("activity", timeout=10.0)
def activity(component: EventstoreComponent, ctx: CollectContext) -> Facts | None:
    """Projection lag, read latency and recent conflicts (our schema only)."""
    if component.schema_kind != "stackmedic":
        return None
    import shlex
    import time
    from pathlib import Path

    from stackmedic.eventstore import open_store
    from stackmedic.eventstore._dsn import is_sqlite, sqlite_path
    from stackmedic.eventstore.lag import LagMonitor

    try:
        store = open_store(component.dsn, prefix=component.prefix, read_only=True,
                           timeout=max(1.0, ctx.remaining()))
    except Exception as err:
        return _failure(err)
    try:
        started = time.perf_counter()
        head = store.head()
        store.read_all(after=max(0, head - 100), limit=100)
        latency = time.perf_counter() - started
        monitor = LagMonitor(store, stall_after=component.stall_after)
        names = component.projections or [c.name for c in store.checkpoints()]
        lags = [monitor.check(name).to_dict() for name in names[:50]]
        conflicts, hot = store.recent_conflicts(minutes=5)
    except Exception as err:
        return _failure(err)
    finally:
        store.close()
    return {"dsn": _shown_dsn(component.dsn), "head": head, "read_seconds": latency,
            "sqlite_file": shlex.quote(str(Path(sqlite_path(component.dsn)).resolve()))
            if is_sqlite(component.dsn) else None,
            "table": f"{component.prefix}events", "integrity_scan": component.integrity,
            "projections": lags, "conflicts_5m": conflicts, "hot_streams": hot}


# symptom → (anomaly kinds, what it means, probable cause)
_INTEGRITY: dict[str, tuple[tuple[str, ...], str, str]] = {
    "eventstore.version_gap": (("version_gap", "version_repeat"), "stream version gaps/repeats",
                               "events written around the optimistic-concurrency check "
                               "(missing unique index, manual SQL, partial restore)"),
    "eventstore.duplicate_event": (("duplicate_event_id",), "duplicate event ids",
                                   "a retried append without the unique event-id index, or "
                                   "a replayed import"),
    "eventstore.payload.invalid": (("payload_invalid",), "payloads that do not decode",
                                   "a writer bypassing the store's serializer, or an event "
                                   "type whose schema changed without an upcaster"),
    "eventstore.timestamp.future": (("timestamp_future",), "event times ahead of now",
                                    "a writer's clock is ahead (NTP not running?) or times "
                                    "are local time stored as UTC"),
    "eventstore.position.disorder": (("position_time_disorder",),
                                     "event times earlier than the previous position's",
                                     "writers' clocks disagree beyond the skew tolerance, or "
                                     "a writer stamps events long before appending them"),
    "eventstore.timestamp.ancient": (("timestamp_ancient",), "absurdly old event times",
                                     "a zero/epoch default timestamp, or a unit mix-up "
                                     "(seconds vs milliseconds)"),
}


GAP = "eventstore.version_gap"
DUPLICATE = "eventstore.duplicate_event"


def _create_index(facts: Facts, suffix: str, columns: str) -> str:
    """The CREATE UNIQUE INDEX that restores a guard of the scanned table, in the
    backend's own syntax (SQLite has no CREATE INDEX CONCURRENTLY)."""
    table = str(facts.get("table"))
    concurrently = " CONCURRENTLY" if facts.get("backend") == "postgresql" else ""
    return (f"CREATE UNIQUE INDEX{concurrently} {table.rpartition('.')[2]}_{suffix} "
            f"ON {table} ({columns});")


def _duplicate_remedy(finding: Finding, facts: Facts) -> Finding:
    """The duplicate-id finding with the index to restore on the scanned table and its
    event-id column (not our schema's names), in the backend's syntax."""
    from dataclasses import replace

    column = facts.get("event_id_column")
    evidence = {**finding.evidence, "backend": facts.get("backend"), "event_id_column": column,
                "create_index": _create_index(facts, "event_id", str(column))}
    return _with_steps(replace(finding, evidence=evidence), DUPLICATE)


def _version_remedy(finding: Finding, facts: Facts) -> Finding:
    """The gap finding with the cause and Fix steps that fit the table: with a unique
    (stream, version) index in place no writer can skip or repeat a version, so the
    missing versions were deleted; without one, the index is what to restore, in the
    backend's own syntax (SQLite has no CREATE INDEX CONCURRENTLY)."""
    from dataclasses import replace

    table, backend = str(facts.get("table")), facts.get("backend")
    index = facts.get("unique_indexes", {}).get("stream_version")
    evidence = {**finding.evidence, "backend": backend, "stream_version_index": index}
    if index:  # a valid unique index also rules out repeats
        trigger = backend == "postgresql" and facts.get("schema") == "stackmedic"
        cause: str | None = (
            f"events were deleted from {table}: its unique index {index} on (stream, "
            "version) rules out racing writers, so the missing versions were written and "
            "removed afterwards (a manual DELETE, a cleanup job, a partial restore"
            + (", past the append-only trigger)" if trigger else ")"))
        cases: tuple[str, ...] = ("Deleted events", "Append-only trigger", "Rebuild") \
            if trigger else ("Deleted events", "Rebuild")
    else:
        evidence["create_index"] = _create_index(
            facts, "stream_version", f"{facts.get('stream_column')}, "
                                     f"{facts.get('version_column')}")
        cause, cases = finding.cause, ("Missing index", "Repair", "Rebuild")
    return _with_steps(replace(finding, evidence=evidence, cause=cause), GAP, cases)


# Clock problems are warnings (the events are intact); the rest is damage (critical).
_CLOCK = ("eventstore.timestamp.future", "eventstore.timestamp.ancient",
          "eventstore.position.disorder")


@probe.rule("eventstore.integrity", uses="integrity", cost="expensive",
            symptoms=[*_INTEGRITY, "eventstore.checkpoint.ahead"],
            thresholds={sid: Threshold(1, None, unit="events") if sid in _CLOCK
                        else Threshold(None, 1, unit="events") for sid in _INTEGRITY}
            | {"eventstore.checkpoint.ahead": Threshold(None, 1, unit="checkpoints")})
def integrity_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Each corruption kind as its symptom, with stream/position samples."""
    if "error" in facts:
        yield _unknown(ctx, "eventstore.version_gap",
                       f"integrity scan could not run: {facts['error']}", facts["error"])
        return
    counts, samples = facts.get("counts", {}), facts.get("samples", {})
    for symptom, (kinds, what, cause) in _INTEGRITY.items():
        count = sum(int(counts.get(k, 0)) for k in kinds)
        found = [s for k in kinds for s in samples.get(k, [])][:_SAMPLES]
        first = found[0] if found else {}
        summary = (f"{count} {what} in {facts.get('events', 0)} events; first: stream "
                   f"{first.get('stream')} at position {first.get('position')}" if count
                   else f"no {what} in {facts.get('events', 0)} events")
        finding = ctx.judge(symptom, count, summary, cause=cause if count else None,
                            evidence={"table": facts.get("table"), "dsn": facts.get("dsn"),
                                      "count": count,
                                      "by_kind": {k: counts.get(k, 0) for k in kinds},
                                      "first_stream": first.get("stream"),
                                      "first_position": first.get("position"),
                                      "samples": found, "skipped": facts.get("skipped", {}),
                                      "scan_seconds": facts.get("seconds")},
                            identity=("table",))
        if count and symptom in (GAP, DUPLICATE):
            finding = (_version_remedy if symptom == GAP else _duplicate_remedy)(finding, facts)
        yield finding
    ahead = samples.get("checkpoint_ahead", [])
    first = ahead[0] if ahead else {}
    count = int(counts.get("checkpoint_ahead", 0))
    yield ctx.judge("eventstore.checkpoint.ahead", count,
                    f"{count} checkpoint(s) beyond the head {facts.get('head')}, first: "
                    f"{first.get('checkpoint')} at {first.get('position')}; those projections "
                    "skip every event until the log grows past them" if count
                    else f"no checkpoint beyond the head {facts.get('head')}",
                    evidence={"table": facts.get("table"), "dsn": facts.get("dsn"),
                              "count": count, "head": facts.get("head"),
                              "projection": first.get("checkpoint"),
                              "checkpoint": first.get("position"), "samples": ahead[:_SAMPLES],
                              "skipped": facts.get("skipped", {})},
                    cause="the events were restored from an older backup than the "
                          "projections, or the store was truncated" if count else None,
                    identity=("table",))


@probe.rule("eventstore.projections", uses="activity",
            symptoms=["eventstore.projection.lag", "eventstore.projection.stalled",
                      "eventstore.checkpoint.ahead"],
            thresholds={"eventstore.projection.lag": Threshold(300, 1800, unit="s")})
def projections_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Lag in events and time per projection; stalled when never run or not moving."""
    if "error" in facts:
        yield _unknown(ctx, "eventstore.projection.lag",
                       f"could not read the store: {facts['error']}", facts["error"])
        return
    for lag in facts.get("projections", []):
        evidence = {**lag, "dsn": facts.get("dsn")}
        name = lag["projection"]
        if lag["state"] == "ahead":
            # Never "caught up". With the integrity scan on, its rule reports every
            # checkpoint beyond the head at once; without it, this is the only witness.
            if not facts.get("integrity_scan"):
                yield ctx.finding(
                    "eventstore.checkpoint.ahead", Severity.CRITICAL,
                    f"projection {name}: checkpoint {lag['checkpoint']} is beyond the head "
                    f"{lag['head']}; it skips every event until the log grows past it",
                    observed=1, unit="checkpoints",
                    evidence={**evidence, "count": 1, "table": facts.get("table")},
                    cause="the events were restored from an older backup than the "
                          "projections, or the store was truncated",
                    identity=("projection",))
            continue
        if lag["state"] == "stalled":
            yield ctx.finding("eventstore.projection.stalled", Severity.CRITICAL,
                              f"projection {name} is stalled: {lag['reason']} "
                              f"({lag['lag_events']} events behind)",
                              observed=lag["lag_events"], unit="events", evidence=evidence,
                              cause="the projector process is down, stuck on a poison "
                                    "event, or lost its database connection",
                              identity=("projection",))
            continue
        yield ctx.judge("eventstore.projection.lag", lag["lag_seconds"],
                        f"projection {name}: {lag['lag_events']} events and "
                        f"{lag['lag_seconds']:.0f}s behind the head", evidence=evidence,
                        cause=("the projector is slower than the write rate, or its batches "
                               "are failing and retrying") if lag["lag_events"] else None,
                        identity=("projection",))


@probe.rule("eventstore.activity", uses="activity",
            symptoms=["eventstore.latency.high", "eventstore.concurrency.conflicts"],
            thresholds={"eventstore.latency.high": Threshold(0.25, 2.0, unit="s"),
                        "eventstore.concurrency.conflicts": Threshold(5, 60, unit="per min")})
def activity_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Read latency of the head and recent conflicts per minute with hot streams."""
    if "error" in facts:
        return
    latency = float(facts["read_seconds"])
    slow = ctx.judge("eventstore.latency.high", latency,
                     f"reading the head and last 100 events took {latency * 1000:.0f} ms",
                     evidence={"read_seconds": latency, "head": facts["head"],
                               "dsn": facts.get("dsn"), "table": facts.get("table"),
                               "sqlite_file": facts.get("sqlite_file")},
                     identity=("dsn",), cause="the events table or its indexes are bloated, "
                     "or the database is saturated")
    # The maintenance step in the store's own dialect: VACUUM (ANALYZE) is a syntax
    # error on SQLite, and SQLite has the WAL file to checkpoint instead.
    yield _with_steps(slow, slow.symptom, ("Batch", "SQLite" if facts.get("sqlite_file")
                                           else "PostgreSQL")) if slow.is_problem else slow
    hot = facts.get("hot_streams", {})
    rate = facts["conflicts_5m"] / 5
    top = next(iter(hot), None)
    yield ctx.judge("eventstore.concurrency.conflicts", rate,
                    f"{rate:.1f} concurrency conflicts per minute (last 5 min)"
                    + (f"; hottest stream {top}" if top else ""),
                    evidence={"conflicts_5m": facts["conflicts_5m"], "hot_streams": hot,
                              "hot_stream": top, "dsn": facts.get("dsn")},
                    identity=("dsn",), cause="many writers contend for the same streams "
                    "(a hot aggregate), or clients retry without re-reading")
