"""SQLite backend (the default): one file in WAL mode.

Commit order: every write transaction starts with `BEGIN IMMEDIATE`, which takes
SQLite's single write lock, and the position is an INTEGER PRIMARY KEY assigned
inside it. Writers are therefore serialized and positions are committed in order; a
reader can never see position n+1 before n. Readers in WAL mode do not block writers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from stackmedic.eventstore._base import EventStore
from stackmedic.eventstore._dsn import sqlite_path
from stackmedic.eventstore._model import (
    AppendBatch,
    AppendResult,
    DuplicateEventError,
    Tx,
    utc_text,
)

__all__ = ["SqliteEventStore"]


class _SqliteTx:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)


class SqliteEventStore(EventStore):
    """Event store in one SQLite file (`sqlite:///events.db`)."""

    dialect: ClassVar[str] = "sqlite"

    def __init__(self, dsn: str, *, prefix: str = "es_", create: bool = True,
                 read_only: bool = False, busy_timeout: float = 30.0) -> None:
        super().__init__(dsn, prefix=prefix)
        self.read_only = read_only
        path = sqlite_path(dsn)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves (see module docstring).
        self.conn = sqlite3.connect(f"file:{path}?mode=ro" if read_only else path,
                                    uri=read_only, isolation_level=None,
                                    timeout=busy_timeout, check_same_thread=False)
        if not read_only:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints in WAL
        # 32 MB of page cache instead of 2 MB, so the hot pages of the four indexes of a
        # large store are not evicted between appends (bounded, per connection).
        self.conn.execute("PRAGMA cache_size=-32768")
        self._handle = _SqliteTx(self.conn)
        if create:
            self.conn.executescript(self._schema())

    def _schema(self) -> str:
        e, c, p = self.events_table, self.checkpoints_table, self.parked_table
        # Uniqueness lives in separate indexes (not table constraints) so that the
        # integrity scanner's tests can drop them and plant corruption, as real damage does.
        return f"""
        CREATE TABLE IF NOT EXISTS {e} (
            position INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL,
            stream TEXT NOT NULL,
            category TEXT NOT NULL,
            version INTEGER NOT NULL,
            type TEXT NOT NULL,
            data TEXT NOT NULL,
            metadata TEXT NOT NULL,
            occurred_at TEXT NOT NULL);
        CREATE UNIQUE INDEX IF NOT EXISTS {e}_event_id ON {e} (event_id);
        CREATE UNIQUE INDEX IF NOT EXISTS {e}_stream_version ON {e} (stream, version);
        CREATE INDEX IF NOT EXISTS {e}_category ON {e} (category, position);
        CREATE TABLE IF NOT EXISTS {c} (
            name TEXT PRIMARY KEY, position INTEGER NOT NULL, updated_at TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS {self.conflicts_table} (
            minute TEXT NOT NULL, stream TEXT NOT NULL, n INTEGER NOT NULL,
            PRIMARY KEY (minute, stream));
        CREATE TABLE IF NOT EXISTS {p} (
            projection TEXT NOT NULL, position INTEGER NOT NULL, error TEXT NOT NULL,
            parked_at TEXT NOT NULL, PRIMARY KEY (projection, position));
        CREATE TABLE IF NOT EXISTS {self.rebuilds_table} (
            projection TEXT PRIMARY KEY, position INTEGER NOT NULL, started_at TEXT NOT NULL);
        """

    def _tx(self) -> Tx:
        return self._handle

    def _begin(self) -> None:
        # A read-only connection cannot take the write lock; a plain BEGIN reads a snapshot.
        self.conn.execute("BEGIN" if self.read_only else "BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def _insert(self, tx: Tx, batches: Sequence[AppendBatch]) -> AppendResult:
        streams = [b.stream for b in batches]
        marks = ",".join("?" * len(streams))
        current = {s: int(v) for s, v in self.conn.execute(
            f"SELECT stream, max(version) FROM {self.events_table} "
            f"WHERE stream IN ({marks}) GROUP BY stream", streams)}
        self.check_expected(batches, current)
        rows = self.rows_for(batches, current)
        try:
            # rowid positions: max + 1 each, consecutive because we hold the write lock
            self.conn.executemany(
                f"INSERT INTO {self.events_table} (event_id, stream, category, version, type, "
                "data, metadata, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError as err:
            raise DuplicateEventError(f"append rejected: {err}") from None
        last = int(self.conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        first = last - len(rows) + 1
        versions = {b.stream: current.get(b.stream, 0) + len(b.events) for b in batches}
        return AppendResult(first, last, versions)

    def _stamp(self, when: datetime) -> Any:
        return utc_text(when)

    def close(self) -> None:
        self.conn.close()
