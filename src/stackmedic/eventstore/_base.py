"""The event store API shared by both backends (`open_store(dsn)` picks one).

    store = open_store("sqlite:///events.db")          # or "postgresql://…"
    store.append("order-1", [NewEvent("placed", {"qty": 2})], expected=NO_STREAM)
    store.append_many([AppendBatch("order-1", [...], expected=1),
                       AppendBatch("stock-9", [...], expected=4)])   # atomic
    for event in store.read_all(after=checkpoint, limit=500): ...

A backend supplies the connection, transactions and the append itself (which is
where commit order is guaranteed, see each backend's docstring); reads, checkpoints
and statistics live here. SQL in this module uses `?` placeholders; the PostgreSQL
transaction handle translates them.
"""

from __future__ import annotations

import abc
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from stackmedic.eventstore._model import (
    ANY,
    AppendBatch,
    AppendResult,
    Checkpoint,
    ConcurrencyError,
    Conflict,
    NewEvent,
    RecordedEvent,
    Tx,
    category_of,
    stored_event,
)

__all__ = ["EventStore", "open_store"]



class EventStore(abc.ABC):
    """Append-only event log with streams, categories and a global position."""

    dialect: ClassVar[str]
    columns: ClassVar[str] = "position, stream, version, event_id, type, data, metadata, " \
        "occurred_at"

    def __init__(self, dsn: str, *, prefix: str = "es_") -> None:
        if not prefix.replace("_", "").isalnum():
            raise ValueError(f"table prefix must be alphanumeric/underscore, got {prefix!r}")
        self.dsn = dsn
        self.prefix = prefix
        self.events_table = f"{prefix}events"
        self.checkpoints_table = f"{prefix}checkpoints"
        self.parked_table = f"{prefix}parked"
        self.conflicts_table = f"{prefix}conflicts"
        self.rebuilds_table = f"{prefix}rebuilds"
        self.appended = 0
        self.conflicts = 0
        self.hot_streams: dict[str, int] = {}
        self.append_latencies: deque[float] = deque(maxlen=1000)
        self._depth = 0

    # --- backend hooks -----------------------------------------------------------------

    @abc.abstractmethod
    def _tx(self) -> Tx:
        """The handle of the current transaction."""

    @abc.abstractmethod
    def _begin(self) -> None: ...

    @abc.abstractmethod
    def _commit(self) -> None: ...

    @abc.abstractmethod
    def _rollback(self) -> None: ...

    @abc.abstractmethod
    def _insert(self, tx: Tx, batches: Sequence[AppendBatch]) -> AppendResult:
        """Check expected versions and insert, positions in commit order."""

    @abc.abstractmethod
    def close(self) -> None: ...

    # --- transactions ------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One transaction for appends, checkpoints and projection writes (re-entrant:
        an inner block joins the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield self._tx()
            finally:
                self._depth -= 1
            return
        self._begin()
        self._depth = 1
        try:
            yield self._tx()
        except BaseException:
            self._depth = 0
            self._rollback()
            raise
        self._depth = 0
        self._commit()

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        """Inside a transaction: let statements go to the server without waiting for
        each result (PostgreSQL pipeline mode; a no-op on SQLite). Errors may then
        surface at a later statement or when the block ends, not at the statement
        that caused them."""
        yield

    # --- writing -------------------------------------------------------------------------

    def append(self, stream: str, events: Sequence[NewEvent],
               expected: int | None = ANY) -> AppendResult:
        """Append events to one stream if it is at `expected` (ANY, NO_STREAM or n)."""
        return self.append_many([AppendBatch(stream, events, expected)])

    def append_many(self, batches: Sequence[AppendBatch]) -> AppendResult:
        """Append to several streams atomically: all batches or none (ConcurrencyError
        names every stream whose version did not match)."""
        streams = [b.stream for b in batches]
        if len(set(streams)) != len(streams):
            raise ValueError("each stream may appear once per append")
        if not any(b.events for b in batches):
            raise ValueError("nothing to append")
        started = time.perf_counter()
        try:
            with self.transaction() as tx:
                result = self._insert(tx, batches)
        except ConcurrencyError as err:
            self.conflicts += 1
            if not self._depth:  # inside a caller's transaction we cannot write after it
                self._record_conflicts(err)
            for conflict in err.conflicts:
                self.hot_streams[conflict.stream] = self.hot_streams.get(conflict.stream, 0) + 1
            if len(self.hot_streams) > 100:  # bounded: keep the hottest
                keep = sorted(self.hot_streams.items(), key=lambda kv: -kv[1])[:50]
                self.hot_streams = dict(keep)
            raise
        self.append_latencies.append(time.perf_counter() - started)
        self.appended += sum(len(b.events) for b in batches)
        return result

    def _record_conflicts(self, err: ConcurrencyError) -> None:
        """Count conflicts per minute and stream in the database, so the doctor (another
        process) can report their rate and the hot streams; a day is kept."""
        now = datetime.now(UTC)
        minute = now.strftime("%Y-%m-%dT%H:%MZ")
        with self.transaction() as tx:
            for conflict in err.conflicts:
                tx.execute(f"INSERT INTO {self.conflicts_table} (minute, stream, n) "
                           "VALUES (?, ?, 1) ON CONFLICT (minute, stream) DO UPDATE "
                           f"SET n = {self.conflicts_table}.n + 1", (minute, conflict.stream))
            tx.execute(f"DELETE FROM {self.conflicts_table} WHERE minute < ?",
                       ((now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%MZ"),))

    def recent_conflicts(self, minutes: int = 5, now: datetime | None = None,
                         ) -> tuple[int, dict[str, int]]:
        """Conflicts in the last `minutes` (from the database): total and top streams."""
        since = ((now or datetime.now(UTC)) - timedelta(minutes=minutes)).strftime(
            "%Y-%m-%dT%H:%MZ")
        rows = self._read(f"SELECT stream, sum(n) FROM {self.conflicts_table} "
                          "WHERE minute >= ? GROUP BY stream ORDER BY sum(n) DESC",
                          (since,)).fetchall()
        streams = {str(r[0]): int(r[1]) for r in rows}
        return sum(streams.values()), dict(list(streams.items())[:10])

    @staticmethod
    def check_expected(batches: Sequence[AppendBatch], current: Mapping[str, int]) -> None:
        """Raise ConcurrencyError naming every batch whose stream is not at `expected`."""
        conflicts = [Conflict(b.stream, b.expected, current.get(b.stream, 0))
                     for b in batches
                     if b.expected is not None and b.expected != current.get(b.stream, 0)]
        if conflicts:
            raise ConcurrencyError(conflicts)

    @staticmethod
    def rows_for(batches: Sequence[AppendBatch], current: Mapping[str, int],
                 ) -> list[tuple[str, str, str, int, str, str, str, str]]:
        """(event_id, stream, category, version, type, data, metadata, occurred_at) rows."""
        rows = []
        for batch in batches:
            version = current.get(batch.stream, 0)
            category = category_of(batch.stream)
            for event in batch.events:
                version += 1
                data, metadata, occurred = event.encoded()
                rows.append((str(event.event_id), batch.stream, category, version, event.type,
                             data, metadata, occurred))
        return rows

    # --- reading -------------------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """One statement: inside the current transaction if there is one, else on its
        own (autocommit), so reads never take SQLite's write lock or pay BEGIN/COMMIT."""
        return self._tx().execute(sql, params)

    def _select(self, where: str, params: Sequence[Any], limit: int | None) -> list[RecordedEvent]:
        sql = f"SELECT {self.columns} FROM {self.events_table} WHERE {where}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._read(sql, params).fetchall()
        return list(map(stored_event, rows))

    def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events with a global position greater than `after`, in position order."""
        return self._select("position > ? ORDER BY position", (after,), limit)

    def read_stream(self, stream: str, from_version: int = 1,
                    limit: int | None = None) -> list[RecordedEvent]:
        """One stream's events from `from_version`, in version order."""
        return self._select("stream = ? AND version >= ? ORDER BY version",
                            (stream, from_version), limit)

    def read_category(self, category: str, after: int = 0,
                      limit: int = 1000) -> list[RecordedEvent]:
        """Events of every stream in `category` (`order` for `order-1`, `order-2`…)."""
        return self._select("category = ? AND position > ? ORDER BY position",
                            (category, after), limit)

    def head(self) -> int:
        """The highest global position (0 for an empty store)."""
        row = self._read(f"SELECT max(position) FROM {self.events_table}").fetchone()
        return int(row[0] or 0)

    def stream_version(self, stream: str) -> int:
        """The stream's current version (0 if it does not exist)."""
        row = self._read(f"SELECT max(version) FROM {self.events_table} WHERE stream = ?",
                         (stream,)).fetchone()
        return int(row[0] or 0)

    # --- checkpoints -----------------------------------------------------------------------

    def checkpoint(self, name: str) -> Checkpoint | None:
        row = self._read(f"SELECT name, position, updated_at FROM {self.checkpoints_table} "
                         "WHERE name = ?", (name,)).fetchone()
        return None if row is None else Checkpoint(row[0], int(row[1]), _as_utc(row[2]))

    def checkpoints(self) -> list[Checkpoint]:
        rows = self._read(f"SELECT name, position, updated_at FROM {self.checkpoints_table} "
                          "ORDER BY name").fetchall()
        return [Checkpoint(r[0], int(r[1]), _as_utc(r[2])) for r in rows]

    def save_checkpoint(self, tx: Tx, name: str, position: int,
                        now: datetime | None = None, *, expected: int | None = None) -> Any:
        """Set a checkpoint inside `tx`, so it commits with the projection's writes.

        With `expected`, only if the stored checkpoint is still there (or absent):
        a compare-and-set whose cursor's `rowcount` is 0 when another runner of the
        same projection moved it first. The row lock it takes (the write lock on
        SQLite) serializes such runners, so only one of them commits a batch."""
        stamp = (now or datetime.now(UTC))
        sql = (f"INSERT INTO {self.checkpoints_table} (name, position, updated_at) "
               "VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
               "position = excluded.position, updated_at = excluded.updated_at")
        if expected is None:
            return tx.execute(sql, (name, position, self._stamp(stamp)))
        return tx.execute(f"{sql} WHERE {self.checkpoints_table}.position = ?",
                          (name, position, self._stamp(stamp), expected))

    def park(self, tx: Tx, projection: str, position: int, error: str) -> None:
        """Record an event a projection skipped, to be looked at later."""
        tx.execute(f"INSERT INTO {self.parked_table} (projection, position, error, parked_at) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                   (projection, position, error[:2000], self._stamp(datetime.now(UTC))))

    def parked(self, projection: str) -> list[tuple[int, str]]:
        rows = self._read(f"SELECT position, error FROM {self.parked_table} WHERE "
                          "projection = ? ORDER BY position", (projection,)).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def _stamp(self, when: datetime) -> Any:
        return when

    def wait_for_events(self, timeout: float) -> None:
        """Block until new events may be there; plain polling unless the backend can
        be notified (PostgreSQL LISTEN/NOTIFY)."""
        time.sleep(timeout)

    # --- diagnostics -----------------------------------------------------------------------

    def diagnostics(self) -> dict[str, Any]:
        """JSON-able snapshot for `/diagnostics`: counters, latency and hot streams."""
        latencies = sorted(self.append_latencies)

        def pct(q: float) -> float | None:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 \
                if latencies else None

        return {"backend": self.dialect, "appended": self.appended, "conflicts": self.conflicts,
                "append_ms_p50": pct(0.5), "append_ms_p99": pct(0.99),
                "hot_streams": dict(sorted(self.hot_streams.items(),
                                           key=lambda kv: -kv[1])[:10])}

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a timestamp, got {value!r}")
    return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


def open_store(dsn: str, *, prefix: str = "es_", create: bool = True,
               read_only: bool = False, timeout: float = 10.0) -> EventStore:
    """An event store on `sqlite:///file.db` (WAL) or `postgresql://…`; `create`
    makes the tables (and on PostgreSQL the append-only triggers) if missing;
    `read_only` is for diagnostics (no writes; statements limited to `timeout`)."""
    from stackmedic.eventstore._dsn import is_sqlite

    if is_sqlite(dsn):
        from stackmedic.eventstore._sqlite import SqliteEventStore

        return SqliteEventStore(dsn, prefix=prefix, create=create and not read_only,
                                read_only=read_only, busy_timeout=timeout)
    from stackmedic.eventstore._postgres import PostgresEventStore

    return PostgresEventStore(dsn, prefix=prefix, create=create and not read_only,
                              read_only=read_only, timeout=timeout)
