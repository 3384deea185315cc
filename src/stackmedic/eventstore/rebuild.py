"""Rebuild a projection from the log, with its previous state as a safety net.

    rebuild(store, Totals())                           # full
    rebuild(store, Totals(), from_time=yesterday)      # replay from a point in time
    rebuild(store, Totals(), from_position=1200)       # replay from an event

Before anything changes, each of the projection's `tables` is copied to
`<table>__backup` and its checkpoint remembered in `<prefix>rebuilds`, in the same
transaction. The replay commits batch checkpoints as it goes; if it fails (the
projection or the database raises), the tables and the checkpoint are restored from
the backup and RebuildError names the failing position. Backups are dropped after a
successful rebuild. A rebuild that died without cleaning up (killed, power loss)
leaves its backup and its `<prefix>rebuilds` row: the next rebuild keeps that backup
(the state before the first attempt) instead of copying the half-rebuilt tables
over it, and a partial replay resumes no later than where the dead one stopped.
A partial replay (from a time or an event) keeps the current state and re-applies
later events: the projection must tolerate that (upserts), or override `reset(tx)`
to rewind.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from stackmedic.eventstore._base import EventStore
from stackmedic.eventstore._model import ProjectionError, RebuildError, Tx
from stackmedic.eventstore.projections import Projection, ProjectionRunner, RunStats

__all__ = ["rebuild", "start_position"]


def start_position(store: EventStore, *, from_time: datetime | None = None,
                   from_position: int | None = None) -> int:
    """The checkpoint to replay from: 0 for a full rebuild."""
    if from_position is not None:
        return max(0, from_position - 1)
    if from_time is not None:
        with store.transaction() as tx:
            stamp = store._stamp(from_time)
            row = tx.execute(f"SELECT min(position) FROM {store.events_table} "
                             "WHERE occurred_at >= ?", (stamp,)).fetchone()
        return store.head() if row[0] is None else int(row[0]) - 1
    return 0


def rebuild(store: EventStore, projection: Projection, *, from_time: datetime | None = None,
            from_position: int | None = None, batch_size: int = 1000,
            progress: Callable[[int, int], None] | None = None) -> RunStats:
    """Replay events into `projection`; restore the backup if it fails.
    `progress(position, head)` is called after every batch."""
    name = projection.name
    start = start_position(store, from_time=from_time, from_position=from_position)
    head = store.head()
    if start > head:  # the checkpoint would end up beyond the head: every event skipped
        raise ValueError(f"from_position {from_position} is beyond the head {head}")
    rebuilds = store.rebuilds_table
    # Made first: a bad setting (batch size) must fail before anything is reset.
    runner = ProjectionRunner(store, projection, batch_size=batch_size, on_error="stop",
                              on_batch=(lambda s: progress(s.position, head)) if progress
                              else None)
    with store.transaction() as tx:
        projection.setup(tx)
        row = tx.execute(f"SELECT position FROM {rebuilds} WHERE projection = ?",
                         (name,)).fetchone()
        current = store.checkpoint(name)
        if row is not None and start and current is not None:
            # An earlier rebuild died: its backup is the good state, and the tables hold
            # its replay up to the checkpoint. Resume from there, never skip past it.
            start = min(start, current.position)
        if row is None:
            previous = current
            tx.execute(f"INSERT INTO {rebuilds} (projection, position, started_at) "
                       "VALUES (?, ?, ?)", (name, previous.position if previous else 0,
                                            store._stamp(datetime.now(UTC))))
            for table in projection.tables:
                tx.execute(f"DROP TABLE IF EXISTS {table}__backup")
                tx.execute(f"CREATE TABLE {table}__backup AS SELECT * FROM {table}")
        if start == 0:
            projection.reset(tx)
        store.save_checkpoint(tx, name, start)
    try:
        stats = runner.run_until_idle()
    except Exception as err:  # the projection, or the database under it
        with store.transaction() as tx:
            _restore(tx, projection)
            row = tx.execute(f"SELECT position FROM {rebuilds} WHERE projection = ?",
                             (name,)).fetchone()
            store.save_checkpoint(tx, name, int(row[0]))
            tx.execute(f"DELETE FROM {rebuilds} WHERE projection = ?", (name,))
        if isinstance(err, ProjectionError):
            raise RebuildError(name, err.position, err.error) from err
        raise RebuildError(name, runner.stats.position + 1, err) from err
    with store.transaction() as tx:
        for table in projection.tables:
            tx.execute(f"DROP TABLE IF EXISTS {table}__backup")
        tx.execute(f"DELETE FROM {rebuilds} WHERE projection = ?", (name,))
    return stats


def _restore(tx: Tx, projection: Projection) -> None:
    for table in projection.tables:
        tx.execute(f"DELETE FROM {table}")
        tx.execute(f"INSERT INTO {table} SELECT * FROM {table}__backup")
        tx.execute(f"DROP TABLE {table}__backup")
