"""Projections: exactly-once checkpoints, failure strategies, lag states, rebuild."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from stackmedic.eventstore import (
    Checkpoint,
    EventStore,
    NewEvent,
    ProjectionError,
    RebuildError,
    RecordedEvent,
    Tx,
    open_store,
)
from stackmedic.eventstore.lag import LagMonitor
from stackmedic.eventstore.projections import Projection, ProjectionRunner
from stackmedic.eventstore.rebuild import rebuild
from tests.eventstore.helpers import BatchCounting, CountingProjection

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _fill(store: EventStore, count: int, start: datetime = T0) -> None:
    store.append("s-1", [NewEvent("e", {"i": i}, occurred_at=start + timedelta(seconds=i))
                         for i in range(count)])


def _counts(store: EventStore, projection: CountingProjection) -> dict[int, int]:
    with store.transaction() as tx:
        return projection.counts(tx)


def test_exactly_once_after_a_crash_mid_batch(dsn: str) -> None:
    """A process killed mid-batch commits nothing of it; the rerun applies each event once."""
    with open_store(dsn) as store:
        _fill(store, 25)
    result = subprocess.run([sys.executable, "-m", "tests.eventstore.helpers", dsn, "17", "10"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 17, result.stderr
    with open_store(dsn) as store:
        checkpoint = store.checkpoint("counting")
        assert checkpoint is not None and checkpoint.position == 10  # first batch only
        projection = CountingProjection()
        assert _counts(store, projection) == dict.fromkeys(range(1, 11), 1)
        ProjectionRunner(store, projection, batch_size=10).run_until_idle()
        assert _counts(store, projection) == dict.fromkeys(range(1, 26), 1)
        assert store.checkpoint("counting").position == 25  # type: ignore[union-attr]


def test_stop_strategy_rolls_back_the_batch_and_raises(dsn: str) -> None:
    """on_error='stop' raises ProjectionError at the failing position, checkpoint unmoved."""
    with open_store(dsn) as store:
        _fill(store, 8)
        projection = CountingProjection(fail_at=5)
        runner = ProjectionRunner(store, projection, batch_size=4)
        with pytest.raises(ProjectionError) as info:
            runner.run_until_idle()
        assert info.value.position == 5 and runner.position() == 4
        assert _counts(store, projection) == {1: 1, 2: 1, 3: 1, 4: 1}


def test_skip_strategy_parks_the_event_and_continues(dsn: str) -> None:
    """on_error='skip' parks the failing event and applies all others exactly once."""
    with open_store(dsn) as store:
        _fill(store, 8)
        projection = CountingProjection(fail_at=6)
        stats = ProjectionRunner(store, projection, batch_size=4, on_error="skip"
                                 ).run_until_idle()
        assert stats.parked == 1
        assert store.parked("counting") == [(6, "ValueError: cannot apply 6")]
        assert _counts(store, projection) == {p: 1 for p in range(1, 9) if p != 6}


def test_retry_strategy_recovers_from_a_transient_failure(dsn: str) -> None:
    """on_error='retry' re-runs a failing event and succeeds when the failure passes."""
    with open_store(dsn) as store:
        _fill(store, 6)
        projection = CountingProjection(fail_at=3, failures=2)
        ProjectionRunner(store, projection, batch_size=4, on_error="retry", retries=3,
                         retry_delay=0.001).run_until_idle()
        assert _counts(store, projection) == dict.fromkeys(range(1, 7), 1)


def test_lag_states_with_an_injected_clock(dsn: str) -> None:
    """Lag is healthy, warning, critical or stalled depending on the clock and checkpoint."""
    with open_store(dsn) as store:
        _fill(store, 10)  # occurred T0 .. T0+9s
        monitor = LagMonitor(store, clock=lambda: T0 + timedelta(minutes=1))
        assert monitor.check("p").state == "stalled"  # never ran
        with store.transaction() as tx:
            store.save_checkpoint(tx, "p", 10, now=T0 + timedelta(seconds=30))
        assert monitor.check("p").state == "healthy"
        with store.transaction() as tx:
            store.save_checkpoint(tx, "p", 4, now=T0 + timedelta(minutes=9))

        def at(minutes: float) -> str:
            return LagMonitor(store, clock=lambda: T0 + timedelta(minutes=minutes)
                              ).check("p").state

        assert at(1) == "healthy"
        assert at(10) == "warning"
        report = LagMonitor(store, stall_after=10**6,
                            clock=lambda: T0 + timedelta(minutes=40)).check("p")
        assert (report.state, report.lag_events) == ("critical", 6)
        store.append("s-2", [NewEvent("late", occurred_at=T0 + timedelta(minutes=12))])
        stalled = at(20)  # checkpoint idle 11 min while an event arrived after it moved
        assert stalled == "stalled"


def test_rebuild_restores_the_backup_when_the_projection_fails(dsn: str) -> None:
    """A rebuild that raises at event N restores the old state and checkpoint."""
    with open_store(dsn) as store:
        _fill(store, 12)
        ProjectionRunner(store, CountingProjection()).run_until_idle()
        before = _counts(store, CountingProjection())
        with pytest.raises(RebuildError) as info:
            rebuild(store, CountingProjection(fail_at=9), batch_size=4)
        assert info.value.position == 9
        assert _counts(store, CountingProjection()) == before
        assert store.checkpoint("counting").position == 12  # type: ignore[union-attr]
        with pytest.raises((sqlite3.Error, psycopg.Error)), store.transaction() as tx:
            tx.execute("SELECT 1 FROM applied__backup")  # the backup was consumed


def test_full_and_partial_rebuild_replay_events(dsn: str) -> None:
    """A full rebuild applies every event once; from_position re-applies from there."""
    with open_store(dsn) as store:
        _fill(store, 12)
        ProjectionRunner(store, CountingProjection()).run_until_idle()
        seen: list[tuple[int, int]] = []
        stats = rebuild(store, CountingProjection(), batch_size=5,
                        progress=lambda pos, head: seen.append((pos, head)))
        assert stats.processed == 12 and seen[-1] == (12, 12)
        assert _counts(store, CountingProjection()) == dict.fromkeys(range(1, 13), 1)
        rebuild(store, CountingProjection(), from_position=11)
        assert _counts(store, CountingProjection())[11] == 2
        rebuild(store, CountingProjection(), from_time=T0 + timedelta(seconds=11))
        assert _counts(store, CountingProjection())[12] == 3


def test_batch_projection_falls_back_to_single_events_to_find_a_poison_event(dsn: str) -> None:
    """When apply_batch raises, the runner replays one by one and parks only the bad event."""
    with open_store(dsn) as store:
        _fill(store, 10)
        projection = BatchCounting(fail_at=7)
        stats = ProjectionRunner(store, projection, batch_size=5, on_error="skip"
                                 ).run_until_idle()
        assert BatchCounting.batch_calls >= 2 and stats.parked == 1
        assert store.parked("batch_counting") == [(7, "ValueError: cannot apply 7")]
        assert _counts(store, projection) == {p: 1 for p in range(1, 11) if p != 7}


class _Constrained(Projection):
    """Stores each event's `i` in a table whose CHECK rejects 7: the failure comes from
    the database, after the statement was sent (pipelined on PostgreSQL)."""

    name = "constrained"
    tables = ("constrained",)

    def setup(self, tx: Tx) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS constrained (position INTEGER PRIMARY KEY, "
                   "i INTEGER NOT NULL CHECK (i <> 7))")

    def apply(self, event: RecordedEvent, tx: Tx) -> None:
        tx.execute("INSERT INTO constrained VALUES (?, ?)", (event.position, event.data["i"]))


def test_a_database_error_in_a_batch_parks_only_its_event(dsn: str) -> None:
    """A constraint violation raised by the server mid-batch rolls the batch back; the
    replay finds the event it belongs to, parks it and applies every other once."""
    with open_store(dsn) as store:
        _fill(store, 12)
        stats = ProjectionRunner(store, _Constrained(), batch_size=5, on_error="skip"
                                 ).run_until_idle()
        assert stats.parked == 1 and stats.position == 12
        [(position, error)] = store.parked("constrained")
        assert position == 8 and "check" in error.lower()
        with store.transaction() as tx:
            rows = tx.execute("SELECT position FROM constrained ORDER BY position").fetchall()
        assert [r[0] for r in rows] == [p for p in range(1, 13) if p != 8]


def test_run_forever_follows_new_events_until_stopped(dsn: str) -> None:
    """A running projector (LISTEN/NOTIFY on PostgreSQL, polling on SQLite) picks up
    events appended while it waits, and returns when stopped."""
    with open_store(dsn) as store, open_store(dsn) as writer:
        projection = CountingProjection()
        runner = ProjectionRunner(store, projection, batch_size=3)
        stop = threading.Event()
        thread = threading.Thread(target=runner.run_forever, args=(stop, 0.05))
        thread.start()
        try:
            _fill(writer, 7)
            while (writer.checkpoint("counting") or Checkpoint("", 0, T0)).position < 7:
                stop.wait(0.01)  # the runner's store belongs to its thread: poll another
        finally:
            stop.set()
            thread.join()
        assert _counts(writer, projection) == dict.fromkeys(range(1, 8), 1)
