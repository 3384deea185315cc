"""The `eventstore` component kind through the real doctor."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stackmedic.eventstore import ConcurrencyError, NewEvent, open_store
from stackmedic.findings import Severity
from stackmedic.runbooks import fill, fix_steps, has_runbook, load_runbook
from stackmedic.symptoms import catalogue
from stackmedic.testing import run_components, symptoms, with_symptom
from tests.fixtures.postgres import PostgresServer

OUR_IDS = sorted(s for s in catalogue() if s.startswith(("entity.", "eventstore.")))


def _store(tmp_path: Path) -> str:
    dsn = f"sqlite:///{tmp_path / 'events.db'}"
    with open_store(dsn) as store:
        for n in range(3):
            store.append(f"order-{n}", [NewEvent("placed", {"n": n}), NewEvent("paid")])
    return dsn


def test_every_entity_and_eventstore_symptom_has_a_runbook() -> None:
    """Each entity.* and eventstore.* id has a runbook with a non-empty Fix list."""
    assert OUR_IDS and all(has_runbook(s) and fix_steps(load_runbook(s)) for s in OUR_IDS)


def test_a_healthy_store_gives_ok_findings_with_numbers(tmp_path: Path) -> None:
    """A clean store yields only ok findings, each with an observed number."""
    dsn = _store(tmp_path)
    with open_store(dsn) as store, store.transaction() as tx:
        store.save_checkpoint(tx, "orders", store.head())
    run = run_components({"events": {"kind": "eventstore", "dsn": dsn}})
    assert symptoms(run.findings) == set()
    ids = {f.symptom for f in run.findings}
    assert {"eventstore.version_gap", "eventstore.projection.lag", "eventstore.latency.high",
            "eventstore.concurrency.conflicts"} <= ids
    assert all(f.observed is not None for f in run.findings if f.severity is Severity.OK)


def test_planted_corruption_becomes_findings_with_filled_remedies(tmp_path: Path) -> None:
    """Gaps, bad JSON and future times are critical/warning with stream, position and
    a runbook remedy naming the stream."""
    dsn = _store(tmp_path)
    with sqlite3.connect(tmp_path / "events.db") as conn:
        conn.execute("DROP INDEX es_events_stream_version")
        conn.execute("INSERT INTO es_events VALUES (50, 'x1', 'order-1', 'order', 7, 'paid', "
                     "'{bad', '{}', '2999-01-01T00:00:00.000000Z')")
    run = run_components({"events": {"kind": "eventstore", "dsn": dsn}})
    gap = with_symptom(run.findings, "eventstore.version_gap")[0]
    assert gap.severity is Severity.CRITICAL
    assert (gap.evidence["first_stream"], gap.evidence["first_position"]) == ("order-1", 50)
    assert gap.remedy is not None and any("order-1" in step for step in gap.remedy.steps)
    assert symptoms(run.findings) == {"eventstore.version_gap", "eventstore.payload.invalid",
                                      "eventstore.timestamp.future"}


def test_disorder_and_checkpoint_ahead_have_their_own_symptoms(tmp_path: Path) -> None:
    """An event older than the one before it is position disorder (a warning, not a
    future timestamp); a checkpoint past the head is checkpoint.ahead, not stalled."""
    dsn = _store(tmp_path)
    early = datetime.now(UTC) - timedelta(hours=1)
    with open_store(dsn) as store:
        store.append("late-1", [NewEvent("placed", occurred_at=early)])
        with store.transaction() as tx:
            store.save_checkpoint(tx, "orders", 9999)
    run = run_components({"events": {"kind": "eventstore", "dsn": dsn,
                                      "projections": ["orders"]}})
    assert symptoms(run.findings) == {"eventstore.position.disorder",
                                      "eventstore.checkpoint.ahead"}
    [disorder] = with_symptom(run.findings, "eventstore.position.disorder")
    assert disorder.severity is Severity.WARNING
    assert (disorder.evidence["first_stream"], disorder.evidence["first_position"]) == \
        ("late-1", 7)
    [ahead] = with_symptom(run.findings, "eventstore.checkpoint.ahead")
    assert ahead.severity is Severity.CRITICAL and ahead.observed == 1
    assert (ahead.evidence["projection"], ahead.evidence["checkpoint"]) == ("orders", 9999)
    assert ahead.remedy is not None and "--projection module:" in ahead.remedy.steps[1]


def test_stalled_and_lagging_projections(tmp_path: Path) -> None:
    """A projection that never ran is stalled; one far behind is critical lag."""
    dsn = _store(tmp_path)
    old = datetime.now(UTC) - timedelta(hours=2)
    with open_store(dsn) as store:
        store.append("order-9", [NewEvent("placed", occurred_at=old)])
        with store.transaction() as tx:
            store.save_checkpoint(tx, "orders", 6)
    run = run_components({"events": {"kind": "eventstore", "dsn": dsn, "integrity": False,
                                      "projections": ["orders", "invoices"]}})
    stalled = with_symptom(run.findings, "eventstore.projection.stalled")
    assert [f.evidence["projection"] for f in stalled] == ["invoices"]
    [lag] = with_symptom(run.findings, "eventstore.projection.lag")
    assert lag.severity is Severity.CRITICAL and lag.evidence["lag_events"] == 1
    assert lag.remedy is not None and "--projection orders" in lag.remedy.steps[0]


def test_checkpoint_ahead_without_the_integrity_scan_is_not_caught_up(tmp_path: Path) -> None:
    """With `integrity: false` the lag check alone must still call a checkpoint past the
    head checkpoint.ahead (critical, remedy filled), not a healthy, caught-up projection."""
    dsn = _store(tmp_path)
    with open_store(dsn) as store, store.transaction() as tx:
        store.save_checkpoint(tx, "orders", 9999)
    run = run_components({"events": {"kind": "eventstore", "dsn": dsn, "integrity": False}})
    assert symptoms(run.findings) == {"eventstore.checkpoint.ahead"}
    assert not with_symptom(run.findings, "eventstore.projection.lag")
    [ahead] = with_symptom(run.findings, "eventstore.checkpoint.ahead")
    assert ahead.severity is Severity.CRITICAL
    assert (ahead.evidence["projection"], ahead.evidence["checkpoint"],
            ahead.evidence["head"]) == ("orders", 9999, 6)
    assert ahead.remedy is not None
    for step in fix_steps(load_runbook(ahead.symptom)):
        assert "<" not in fill(step, ahead).replace("<=", ""), step
    run = run_components({"events": {"kind": "eventstore", "dsn": dsn}})
    assert len(with_symptom(run.findings, "eventstore.checkpoint.ahead")) == 1  # not twice


def test_conflicts_are_counted_across_processes(tmp_path: Path) -> None:
    """Conflicts recorded by writers show up as a rate with the hottest stream."""
    dsn = _store(tmp_path)
    with open_store(dsn) as store:
        for _ in range(30):
            with pytest.raises(ConcurrencyError):
                store.append("order-1", [NewEvent("x")], expected=0)
    run = run_components({"events": {"kind": "eventstore", "dsn": dsn, "integrity": False}})
    [conflicts] = with_symptom(run.findings, "eventstore.concurrency.conflicts")
    assert conflicts.severity is Severity.WARNING and conflicts.observed == 6.0
    assert conflicts.evidence["hot_stream"] == "order-1"


def test_unreachable_store_is_unknown_without_a_password_leak(
        pg_factory: object) -> None:
    """A refused connection is an unknown finding whose evidence hides the password."""
    server: PostgresServer = pg_factory()  # type: ignore[operator]
    dsn = server.dsn(password="s3cret-pw")
    server.stop()
    run = run_components({"events": {"kind": "eventstore", "dsn": dsn}})
    unknown = [f for f in run.findings if f.severity is Severity.UNKNOWN]
    assert unknown and all("s3cret-pw" not in str(f.to_dict()) for f in run.findings)


def test_an_unreadable_store_gets_the_could_not_run_remedy(tmp_path: Path) -> None:
    """A store that cannot be opened is unknown with the could-not-run runbook's steps,
    not a repair of stream `<first_stream>` nor a lag runbook with empty placeholders."""
    dsn = f"sqlite:///{tmp_path / 'missing' / 'events.db'}"
    run = run_components({"events": {"kind": "eventstore", "dsn": dsn}})
    unknown = [f for f in run.findings if f.severity is Severity.UNKNOWN]
    assert {f.symptom for f in unknown} == {"eventstore.version_gap",
                                            "eventstore.projection.lag"}
    for finding in unknown:
        assert finding.remedy is not None
        assert finding.remedy.runbook == "stackmedic.check.failed"
        assert all("<" not in step for step in finding.remedy.steps), finding.remedy.steps
        assert any("unable to open" in step for step in finding.remedy.steps)


def test_remedy_placeholders_are_all_filled(tmp_path: Path) -> None:
    """Every problem finding's remedy steps use only evidence keys the rule sets."""
    dsn = _store(tmp_path)
    with sqlite3.connect(tmp_path / "events.db") as conn:
        conn.execute("DROP INDEX es_events_event_id")
        conn.execute("INSERT INTO es_events SELECT 60, event_id, 'dup-1', 'dup', 1, type, data, "
                     "metadata, '1970-01-01T00:00:00.000000Z' FROM es_events WHERE position = 1")
        conn.execute("INSERT INTO es_checkpoints VALUES ('gone', 9999, '2024-01-01T00:00:00Z')")
    run = run_components({"events": {"kind": "eventstore", "dsn": dsn}})
    problems = [f for f in run.findings if f.is_problem]
    assert {f.symptom for f in problems} >= {"eventstore.duplicate_event",
                                             "eventstore.timestamp.ancient",
                                             "eventstore.position.disorder",
                                             "eventstore.checkpoint.ahead"}
    for finding in problems:
        for step in fix_steps(load_runbook(finding.symptom)):
            assert "<" not in fill(step, finding).replace("<=", ""), (finding.symptom, step)
