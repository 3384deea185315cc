"""PostgreSQL backend (psycopg 3).

Commit order. A sequence hands out positions when rows are *inserted*, not when
transactions *commit*: with two writers, position 11 can commit before 10, a reader
that has seen 11 moves its checkpoint past 10, and event 10 is never projected (the
bug Marten and others chased for years). Two known fixes:

1. A transaction-scoped advisory lock (`pg_advisory_xact_lock`) taken before the
   version check and held until commit: appends are serialized, so positions commit
   in order and a reader can simply read `position > checkpoint`.
2. Let writers run concurrently and make readers stop at a "safe position": the
   lowest position of any in-flight transaction, tracked with `xid8` columns and
   `pg_snapshot_xmin(pg_current_snapshot())`.

We use (1). It is simple to prove (the commit-order tests hold a transaction open
and watch the next writer wait), readers stay plain range scans, and the cost is
one serialized append transaction at a time, which batching amortizes (the bench
measures it against the `eventsourcing` library, which takes a table lock for the
same reason). (2) scales writers better but makes every reader pay and is easy to
get subtly wrong; revisit if append throughput becomes the limit.

Events are append-only: triggers reject UPDATE, DELETE and TRUNCATE of the table.
Appends NOTIFY `<prefix>events` so runners can LISTEN instead of polling.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from json.encoder import encode_basestring
from typing import Any, ClassVar

from stackmedic.eventstore._base import EventStore
from stackmedic.eventstore._model import (
    AppendBatch,
    AppendResult,
    DuplicateEventError,
    EventStoreError,
    Tx,
    category_of,
)

__all__ = ["PostgresEventStore"]

_quote = encode_basestring  # a str as a JSON string, in C


class _PgTx:
    """Transaction handle. BEGIN is deferred and pipelined with the first statement,
    saving a network round trip per transaction."""

    dialect = "postgres"

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.begin_pending = False
        self.committed = False
        self._sql: dict[str, str] = {}

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run `sql` with `?` placeholders (translated to psycopg's `%s`)."""
        converted = self._sql.get(sql)
        if converted is None:
            converted = sql.replace("%", "%%").replace("?", "%s") if params else sql
            if len(self._sql) < 256:
                self._sql[sql] = converted
        return self.run([(converted, params or None)])[-1]

    def run(self, statements: list[tuple[str, Any]]) -> list[Any]:
        """Send statements (`%s` placeholders) in one pipeline; their cursors."""
        if self.begin_pending:
            statements = [("BEGIN", None), *statements]
            self.begin_pending = False
        if len(statements) == 1:
            return [self.conn.execute(*statements[0])]
        with self.conn.pipeline():
            cursors = [self.conn.execute(sql, params) for sql, params in statements]
        return cursors[-len(statements):]


class PostgresEventStore(EventStore):
    """Event store in PostgreSQL tables `<prefix>events`, `<prefix>checkpoints`…"""

    dialect: ClassVar[str] = "postgres"
    # uuid as text: psycopg would build a uuid.UUID per row only for us to str() it;
    # payloads as text, decoded only when a projection reads them (RecordedEvent).
    columns: ClassVar[str] = "position, stream, version, event_id::text, type, data::text, " \
        "metadata::text, occurred_at"

    def __init__(self, dsn: str, *, prefix: str = "es_", create: bool = True,
                 read_only: bool = False, timeout: float = 10.0) -> None:
        super().__init__(dsn, prefix=prefix)
        import psycopg

        options = "-c TimeZone=UTC"
        if read_only:  # diagnostics: read-only sessions with bounded statements
            options += (" -c default_transaction_read_only=on -c lock_timeout=1000"
                        f" -c statement_timeout={max(1, int(timeout * 1000))}")
        try:
            self.conn = psycopg.connect(dsn, autocommit=True,
                                        connect_timeout=max(1, int(timeout)), options=options)
        except psycopg.Error as err:
            raise EventStoreError(f"cannot connect to the event store: {err}") from None
        self._handle = _PgTx(self.conn)
        self._lock_key = f"stackmedic:{self.events_table}"
        self._append = self._append_sql()
        self.channel = f"{prefix}events"
        self._listener: Any = None
        if create:
            with self.transaction() as tx:
                # Serialize concurrent schema creation (CREATE IF NOT EXISTS races).
                tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (self._lock_key,))
                tx.execute(self._schema())

    def _schema(self) -> str:
        e, c, p = self.events_table, self.checkpoints_table, self.parked_table
        return f"""
        CREATE TABLE IF NOT EXISTS {e} (
            position bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            event_id uuid NOT NULL,
            stream text NOT NULL,
            category text NOT NULL,
            version bigint NOT NULL,
            type text NOT NULL,
            data jsonb NOT NULL,
            metadata jsonb NOT NULL,
            occurred_at timestamptz NOT NULL);
        CREATE UNIQUE INDEX IF NOT EXISTS {e}_event_id ON {e} (event_id);
        CREATE UNIQUE INDEX IF NOT EXISTS {e}_stream_version ON {e} (stream, version);
        CREATE INDEX IF NOT EXISTS {e}_category ON {e} (category, position);
        CREATE TABLE IF NOT EXISTS {c} (
            name text PRIMARY KEY, position bigint NOT NULL, updated_at timestamptz NOT NULL);
        CREATE TABLE IF NOT EXISTS {self.conflicts_table} (
            minute text NOT NULL, stream text NOT NULL, n bigint NOT NULL,
            PRIMARY KEY (minute, stream));
        CREATE TABLE IF NOT EXISTS {p} (
            projection text NOT NULL, position bigint NOT NULL, error text NOT NULL,
            parked_at timestamptz NOT NULL, PRIMARY KEY (projection, position));
        CREATE TABLE IF NOT EXISTS {self.rebuilds_table} (
            projection text PRIMARY KEY, position bigint NOT NULL,
            started_at timestamptz NOT NULL);
        CREATE OR REPLACE FUNCTION {e}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% on {e} rejected: events are append-only', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$;
        CREATE OR REPLACE TRIGGER {e}_no_change BEFORE UPDATE OR DELETE ON {e}
            FOR EACH ROW EXECUTE FUNCTION {e}_append_only();
        CREATE OR REPLACE TRIGGER {e}_no_truncate BEFORE TRUNCATE ON {e}
            FOR EACH STATEMENT EXECUTE FUNCTION {e}_append_only();
        """

    def _tx(self) -> Tx:
        return self._handle

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        with self.conn.pipeline():
            if self._handle.begin_pending:  # BEGIN is queued like the rest
                self._handle.begin_pending = False
                self.conn.execute("BEGIN")
            yield

    def _begin(self) -> None:
        self._handle.begin_pending = True

    def _commit(self) -> None:
        # Skipped when the transaction never began (empty) or an append already sent
        # COMMIT in its own pipeline.
        if not self._handle.begin_pending and not self._handle.committed:
            self.conn.execute("COMMIT")
        self._handle.begin_pending = self._handle.committed = False

    def _rollback(self) -> None:
        if not self._handle.begin_pending and not self._handle.committed:
            self.conn.execute("ROLLBACK")
        self._handle.begin_pending = self._handle.committed = False

    def _append_sql(self) -> str:
        """One statement that reads each stream's version, checks the expected ones and
        inserts only if all match, numbering versions from what it read; it runs after
        the lock statement, so its snapshot sees every append committed before."""
        e = self.events_table
        return (
            "WITH cur AS MATERIALIZED (SELECT s.stream, s.expected, coalesce((SELECT "
            f"max(version) FROM {e} WHERE stream = s.stream), 0) AS v FROM "
            "unnest(%s::text[], %s::bigint[]) AS s(stream, expected)), "
            "ok AS MATERIALIZED (SELECT bool_and(expected IS NULL OR expected = v) AS ok "
            "FROM cur), "
            f"ins AS (INSERT INTO {e} (event_id, stream, category, version, type, data, "
            "metadata, occurred_at) SELECT (x->>0)::uuid, x->>1, x->>2, (SELECT v FROM cur "
            "WHERE cur.stream = x->>1) + (x->>3)::bigint, x->>4, x->5, x->6, "
            "(x->>7)::timestamptz FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY "
            "AS d(x, i) WHERE (SELECT ok FROM ok) ORDER BY i RETURNING position) "
            "SELECT stream, v, (SELECT min(position) FROM ins), (SELECT max(position) FROM "
            "ins), (SELECT pg_notify(%s, '') FROM ok WHERE ok) FROM cur")

    def _insert(self, tx: Tx, batches: Sequence[AppendBatch]) -> AppendResult:
        """One round trip: lock, check-and-insert, and (when the append is its own
        transaction) COMMIT go out in one pipeline. The lock is its own statement
        because in READ COMMITTED a statement's snapshot is taken when it starts: the
        next statement then sees every append committed by the previous lock holder.
        Rows are numbered 1..n per stream here and offset by the current version in
        SQL; ORDER BY keeps positions in batch order."""
        import psycopg

        # One JSON parameter exploded by the server: far cheaper to build than eight
        # text arrays, and payloads go in as jsonb without a second encoding.
        parts = []
        for batch in batches:
            head = f'{_quote(batch.stream)},{_quote(category_of(batch.stream))}'
            for number, event in enumerate(batch.events, 1):
                data, metadata, occurred = event.encoded()
                parts.append(f'["{event.event_id}",{head},{number},{_quote(event.type)},'
                             f'{data},{metadata},"{occurred}"]')
        document = "[" + ",".join(parts) + "]"
        own = self._depth == 1
        try:
            results = self._handle.run([
                ("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._lock_key,)),
                (self._append, ([b.stream for b in batches], [b.expected for b in batches],
                                document, self.channel)),
                *([("COMMIT", None)] if own else [])])
            self._handle.committed = own
        except psycopg.errors.UniqueViolation as err:
            raise DuplicateEventError(f"append rejected: {err.diag.message_detail}") from None
        rows = results[-2 if own else -1].fetchall()
        current = {str(stream): int(version) for stream, version, _, _, _ in rows}
        self.check_expected(batches, current)  # nothing was inserted if this raises
        first, last = rows[0][2], rows[0][3]
        versions = {b.stream: current[b.stream] + len(b.events) for b in batches}
        return AppendResult(int(first), int(last), versions)

    def wait_for_events(self, timeout: float) -> None:
        """Block until an append is notified or `timeout` passes (LISTEN/NOTIFY)."""
        import psycopg

        if self._listener is None:
            self._listener = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
            self._listener.execute(f"LISTEN {self.channel}")
        for _ in self._listener.notifies(timeout=timeout, stop_after=1):
            pass

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self.conn.close()
