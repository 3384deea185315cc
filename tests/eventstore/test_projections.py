"""Projections: exactly-once checkpoints, failure strategies, lag states, rebuild."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
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


def test_two_runners_of_one_projection_apply_each_event_once(dsn: str) -> None:
    """A runner that read a batch while another runner of the same projection (a second
    replica, or a rebuild) committed it first does not apply it again nor move the
    checkpoint back: the checkpoint is compared-and-set in the batch transaction."""
    with open_store(dsn) as store, open_store(dsn) as other:
        _fill(store, 12)
        projection = CountingProjection()
        slow = ProjectionRunner(store, projection, batch_size=5)
        fast = ProjectionRunner(other, CountingProjection(), batch_size=5)
        read_all = store.read_all
        raced: list[int] = []

        def read_then_lose_the_race(after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
            events = read_all(after=after, limit=limit)
            if not raced:  # between reading its batch and applying it, once
                raced.append(fast.run_until_idle().processed)
            return events

        store.read_all = read_then_lose_the_race  # type: ignore[method-assign]
        slow.run_until_idle()
        assert raced == [12]
        assert _counts(store, projection) == dict.fromkeys(range(1, 13), 1)
        assert store.checkpoint("counting").position == 12  # type: ignore[union-attr]


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


def test_an_idle_projection_is_not_stalled_by_an_event_that_just_arrived(dsn: str) -> None:
    """A projection caught up hours ago is healthy when one event arrived a second ago
    (its runner has not polled yet); stalled only once that event waited `stall_after`."""
    with open_store(dsn) as store:
        _fill(store, 3)
        with store.transaction() as tx:
            store.save_checkpoint(tx, "p", 3, now=T0 + timedelta(seconds=10))
        store.append("s-2", [NewEvent("new", occurred_at=T0 + timedelta(hours=2))])

        def at(seconds: float) -> str:
            return LagMonitor(store, clock=lambda: T0 + timedelta(hours=2, seconds=seconds)
                              ).check("p").state

        assert at(1) == "healthy"
        assert at(299) == "healthy"
        assert at(301) == "stalled"


def test_a_checkpoint_beyond_the_head_is_ahead_not_caught_up(dsn: str) -> None:
    """A checkpoint past the last event (events lost or restored from an older backup)
    is reported as `ahead`, never as a healthy projection that has caught up."""
    with open_store(dsn) as store:
        _fill(store, 3)
        with store.transaction() as tx:
            store.save_checkpoint(tx, "p", 40, now=T0)
        report = LagMonitor(store, clock=lambda: T0 + timedelta(minutes=1)).check("p")
    assert (report.state, report.head, report.checkpoint) == ("ahead", 3, 40)
    assert "beyond the head 3" in report.reason


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


def test_a_rebuild_after_a_crashed_rebuild_keeps_the_original_backup(dsn: str) -> None:
    """A rebuild killed mid-way leaves its backup; the next rebuild must not overwrite it
    with the half-rebuilt state, so a failure then still restores the original state."""
    with open_store(dsn) as store:
        _fill(store, 12)
        ProjectionRunner(store, CountingProjection()).run_until_idle()
        before = _counts(store, CountingProjection())
    result = subprocess.run([sys.executable, "-m", "tests.eventstore.helpers", dsn, "10", "4",
                             "rebuild"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 17, result.stderr
    with open_store(dsn) as store:
        assert store.checkpoint("counting").position == 8  # type: ignore[union-attr]
        with pytest.raises(RebuildError):
            rebuild(store, CountingProjection(fail_at=3), batch_size=4)
        assert _counts(store, CountingProjection()) == before
        assert store.checkpoint("counting").position == 12  # type: ignore[union-attr]
        rebuild(store, CountingProjection(), batch_size=4)
        assert _counts(store, CountingProjection()) == before
        with pytest.raises((sqlite3.Error, psycopg.Error)), store.transaction() as tx:
            tx.execute("SELECT 1 FROM applied__backup")  # dropped after success


def test_a_partial_rebuild_after_a_crashed_one_resumes_without_a_hole(dsn: str) -> None:
    """After a full rebuild died at event 10 (tables hold 1..8), a rebuild asked to start
    at 11 resumes at 9 instead of leaving 9 and 10 out of the projection."""
    with open_store(dsn) as store:
        _fill(store, 12)
        ProjectionRunner(store, CountingProjection()).run_until_idle()
    result = subprocess.run([sys.executable, "-m", "tests.eventstore.helpers", dsn, "10", "4",
                             "rebuild"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 17, result.stderr
    with open_store(dsn) as store:
        rebuild(store, CountingProjection(), from_position=11)
        assert _counts(store, CountingProjection()) == dict.fromkeys(range(1, 13), 1)


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


def test_a_rebuild_from_beyond_the_head_is_refused_untouched(dsn: str) -> None:
    """`from_position` past the head would leave the checkpoint beyond the head (the
    projection then skips every new event): refused before anything changes."""
    with open_store(dsn) as store:
        _fill(store, 5)
        ProjectionRunner(store, CountingProjection()).run_until_idle()
        with pytest.raises(ValueError, match="beyond the head 5"):
            rebuild(store, CountingProjection(), from_position=500)
        assert store.checkpoint("counting").position == 5  # type: ignore[union-attr]
        rebuild(store, CountingProjection(), from_position=6)  # nothing left to replay
        assert store.checkpoint("counting").position == 5  # type: ignore[union-attr]


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
            # A hang guard, not a timing assertion: a dead runner must fail the test.
            deadline = time.monotonic() + 120
            while (writer.checkpoint("counting") or Checkpoint("", 0, T0)).position < 7:
                assert thread.is_alive() and time.monotonic() < deadline, "runner stopped"
                stop.wait(0.01)  # the runner's store belongs to its thread: poll another
        finally:
            stop.set()
            thread.join()
        assert _counts(writer, projection) == dict.fromkeys(range(1, 8), 1)
