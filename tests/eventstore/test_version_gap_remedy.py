"""The version-gap remedy fits the table: a deleted event is not a missing index, and
an index to restore comes in the backend's own syntax (run here for real)."""

from __future__ import annotations

import sqlite3

import psycopg

from stackmedic.eventstore import NewEvent, open_store
from stackmedic.eventstore._dsn import is_sqlite, sqlite_path
from stackmedic.findings import Finding, Severity
from stackmedic.testing import run_components, with_symptom


def _execute(dsn: str, *statements: str) -> None:
    """Run SQL as the store's owner, outside any transaction (CONCURRENTLY needs that)."""
    if is_sqlite(dsn):
        with sqlite3.connect(sqlite_path(dsn), isolation_level=None) as conn:
            for sql in statements:
                conn.execute(sql)
        return
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)  # type: ignore[arg-type]  # our own literal SQL


def _gap(dsn: str) -> Finding:
    """The doctor's version-gap finding on the store at `dsn` (one is expected)."""
    [gap] = with_symptom(run_components({"events": {"kind": "eventstore", "dsn": dsn}})
                         .findings, "eventstore.version_gap")
    return gap


def _orders(dsn: str) -> None:
    with open_store(dsn) as store:
        store.append("order-1", [NewEvent("placed"), NewEvent("paid"), NewEvent("shipped")])


def test_a_deleted_event_is_reported_as_deleted_not_as_a_missing_index(dsn: str) -> None:
    """Deleting version 2 of a stream (past PostgreSQL's append-only trigger) is a critical
    gap whose remedy restores the deleted rows and never creates the existing index."""
    _orders(dsn)
    bypass = () if is_sqlite(dsn) else ("SET session_replication_role = replica",)
    _execute(dsn, *bypass, "DELETE FROM es_events WHERE stream = 'order-1' AND version = 2")
    gap = _gap(dsn)
    assert gap.severity is Severity.CRITICAL
    assert gap.evidence["stream_version_index"] == "es_events_stream_version"
    assert gap.cause is not None and "deleted" in gap.cause
    assert gap.remedy is not None
    steps = "\n".join(gap.remedy.steps)
    assert "CREATE UNIQUE INDEX" not in steps and "Repair:" not in steps
    assert steps.startswith("Deleted events:") and "order-1" in steps
    assert ("ENABLE TRIGGER es_events_no_change" in steps) is not is_sqlite(dsn)
    assert "<" not in steps


def test_the_index_to_restore_is_created_by_the_suggested_command(dsn: str) -> None:
    """Without the (stream, version) index, the remedy's CREATE UNIQUE INDEX runs as given
    on this backend (CONCURRENTLY on PostgreSQL only) and the gap is then blamed on a
    deletion instead."""
    _orders(dsn)
    _execute(dsn, "DROP INDEX es_events_stream_version",
             "INSERT INTO es_events SELECT 50, '00000000-0000-4000-8000-000000000050', "
             "stream, category, 7, type, data, metadata, occurred_at FROM es_events "
             "WHERE position = 1")
    gap = _gap(dsn)
    assert gap.evidence["stream_version_index"] is None and gap.remedy is not None
    [create] = [line.strip() for step in gap.remedy.steps for line in step.splitlines()
                if line.strip().startswith("CREATE UNIQUE INDEX")]
    assert ("CONCURRENTLY" in create) is not is_sqlite(dsn)
    _execute(dsn, create)
    assert _gap(dsn).evidence["stream_version_index"] == "es_events_stream_version"
