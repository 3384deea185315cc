"""Projections used by the tests (importable by the crash subprocess)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from stackmedic.eventstore import RecordedEvent, Tx, open_store
from stackmedic.eventstore.projections import Projection, ProjectionRunner


class CountingProjection(Projection):
    """Counts how often each position was applied; raises (or exits) at `fail_at`."""

    name = "counting"
    tables = ("applied",)

    def __init__(self, fail_at: int | None = None, exit_at: int | None = None,
                 failures: int = 10**9) -> None:
        self.fail_at = fail_at
        self.exit_at = exit_at
        self.failures = failures

    def setup(self, tx: Tx) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS applied (position INTEGER PRIMARY KEY, "
                   "n INTEGER NOT NULL)")

    def apply(self, event: RecordedEvent, tx: Tx) -> None:
        tx.execute("INSERT INTO applied VALUES (?, 1) ON CONFLICT (position) DO UPDATE "
                   "SET n = applied.n + 1", (event.position,))
        if event.position == self.exit_at:
            os._exit(17)  # a real crash: no rollback, no cleanup, mid-batch
        if event.position == self.fail_at and self.failures > 0:
            self.failures -= 1
            raise ValueError(f"cannot apply {event.position}")

    def counts(self, tx: Tx) -> dict[int, int]:
        return dict(tx.execute("SELECT position, n FROM applied ORDER BY position").fetchall())


def crash(dsn: str, exit_at: int, batch_size: int) -> None:
    """Run the projection in this process until it dies at `exit_at`."""
    with open_store(dsn) as store:
        ProjectionRunner(store, CountingProjection(exit_at=exit_at),
                         batch_size=batch_size).run_until_idle()




class BatchCounting(CountingProjection):
    """The same projection applying whole batches with one statement per event set."""

    name = "batch_counting"
    batch_calls = 0

    def apply_batch(self, events: Sequence[RecordedEvent], tx: Tx) -> None:
        BatchCounting.batch_calls += 1
        if any(e.position == self.fail_at for e in events):
            raise ValueError("batch contains a poison event")
        for event in events:
            tx.execute("INSERT INTO applied VALUES (?, 1) ON CONFLICT (position) DO UPDATE "
                       "SET n = applied.n + 1", (event.position,))


def crash_rebuild(dsn: str, exit_at: int, batch_size: int) -> None:
    """Rebuild the projection in this process until it dies at `exit_at`."""
    from stackmedic.eventstore.rebuild import rebuild

    with open_store(dsn) as store:
        rebuild(store, CountingProjection(exit_at=exit_at), batch_size=batch_size)


if __name__ == "__main__":
    run = crash_rebuild if sys.argv[4:] == ["rebuild"] else crash
    run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
