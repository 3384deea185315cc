"""The SQL the `snapshot` collector runs, one function per section of the facts.

Every query is read-only and lock-free: sizes come from `pg_class.relpages` instead of
`pg_relation_size()` (which takes an AccessShareLock an `ALTER TABLE` would queue
behind), and nothing touches user tables except the user-declared uniqueness checks.
Each section returns JSON-able values with capped row counts and text lengths.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg import Cursor

    from stackmedic.probes.postgres import PostgresComponent, UniqueCheck

__all__ = ["SECTIONS", "Row", "deadlock_counter", "ident", "quote", "scrub_sql", "server_info",
           "unique_check"]

Row = dict[str, Any]
QUERY_CHARS = 300  # statement text kept per session or statement
MAX_SESSIONS = 2000
MAX_ROWS = 50

SETTINGS = ("max_connections", "superuser_reserved_connections", "reserved_connections",
            "autovacuum", "autovacuum_freeze_max_age", "shared_preload_libraries",
            "deadlock_timeout",
            "idle_in_transaction_session_timeout", "track_counts", "block_size")


def _plain(value: Any) -> Any:
    """Driver values as JSON types: timestamps in ISO 8601 UTC, numerics as floats."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def scrub_sql(text: str | None) -> str | None:
    """Statement text with password literals masked: pg_stat_activity and
    pg_stat_statements keep `ALTER ROLE … PASSWORD '…'` verbatim (the rest of the
    text is redacted downstream)."""
    from stackmedic import redact

    return None if text is None else redact.mask_sql_passwords(text)


def ident(name: str) -> str:
    """`name` as an SQL identifier (quoted unless plain lower case), for shown commands."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else \
        '"' + name.replace('"', '""') + '"'


def quote(value: str) -> str:
    """`value` as an SQL string literal, for commands shown in remedies."""
    return "'" + value.replace("'", "''") + "'"


def _sample(value: Any) -> Any:
    """A user column's value as a short JSON scalar (uuid, date, json… become text)."""
    value = _plain(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    text = repr(value) if isinstance(value, bytes) else str(value)
    return text[:QUERY_CHARS]


def _rows(cur: Cursor[Row], sql: str, params: Any = None) -> list[Row]:
    cur.execute(sql, params)
    return [{k: _plain(v) for k, v in row.items()} for row in cur.fetchall()]


def server_info(cur: Cursor[Row]) -> Row:
    """Who we are, where, which version, and which monitoring privileges we hold."""
    row = _rows(cur, """
        SELECT current_user AS user, current_database() AS database,
               current_setting('server_version_num')::int AS version_num,
               current_setting('server_version') AS version,
               pg_is_in_recovery() AS in_recovery, pg_backend_pid() AS own_pid,
               (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
               pg_has_role('pg_monitor', 'MEMBER') AS pg_monitor,
               pg_has_role('pg_read_all_stats', 'MEMBER') AS pg_read_all_stats""")[0]
    row["settings"] = {r["name"]: r["setting"] for r in _rows(
        cur, "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", [list(SETTINGS)])}
    return row


def deadlock_counter(cur: Cursor[Row]) -> Row:
    """Deadlocks counted by the statistics system, summed over all databases, and per
    database that has any (`per_database`, keyed `<oid> <statistics reset>`: a database
    dropped, created or reset between runs changes its own count only), with what
    restarts every count (`epoch`: the server's start)."""
    return _rows(cur, """
        SELECT coalesce(sum(deadlocks), 0)::bigint AS deadlocks, min(stats_reset) AS stats_reset,
               pg_postmaster_start_time()::text AS epoch,
               coalesce(jsonb_object_agg(datid::text || ' ' || coalesce(stats_reset::text, ''),
                                         deadlocks) FILTER (WHERE deadlocks > 0),
                        '{}') AS per_database
        FROM pg_stat_database""")[0]


def activity(cur: Cursor[Row], info: Row, component: PostgresComponent) -> Row:
    """One snapshot of the client sessions (the oldest first)."""
    rows = _rows(cur, """
        SELECT pid, datname, usename, application_name, host(client_addr) AS client_addr,
               state, wait_event_type, wait_event,
               EXTRACT(epoch FROM now() - xact_start)::float8 AS xact_age_s,
               EXTRACT(epoch FROM now() - query_start)::float8 AS query_age_s,
               EXTRACT(epoch FROM now() - state_change)::float8 AS state_age_s,
               left(query, %(chars)s) AS query,
               -- how many transaction ids the xmin horizon is held back by this session
               greatest(age(backend_xid), age(backend_xmin))::bigint AS xmin_age,
               CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) END AS blocked_by,
               backend_type IS NULL AS hidden, count(*) OVER () AS total
        FROM pg_stat_activity
        -- Without pg_read_all_stats other roles' sessions show no backend_type (nor
        -- state, client or query); one with a database and a role is a client session,
        -- so the slot count stays right even for an unprivileged monitoring role.
        WHERE backend_type = 'client backend'
           OR (backend_type IS NULL AND datid IS NOT NULL AND usesysid IS NOT NULL)
        -- Oldest first by whichever clock makes a session old (state, statement or
        -- transaction), so every rule's worst cases survive the limit.
        ORDER BY least(state_change, query_start, xact_start) NULLS LAST
        LIMIT %(limit)s""",
                 {"chars": QUERY_CHARS, "limit": MAX_SESSIONS})
    total = rows[0]["total"] if rows else 0
    for row in rows:
        del row["total"]
        row["query"] = scrub_sql(row["query"])
    return {"total": total, "sessions": rows, "truncated": total > len(rows),
            "hidden": sum(1 for row in rows if row["hidden"])}


def locks(cur: Cursor[Row], info: Row, component: PostgresComponent,
          waiting: list[int]) -> list[Row]:
    """The lock each waiting session waits for (and the row lock it already holds)."""
    if not waiting:
        return []
    waited = "now() - waitstart" if info["version_num"] >= 140000 else "NULL::interval"
    return _rows(cur, f"""
        SELECT pid, locktype, mode, granted, relation::regclass::text AS relation,
               transactionid::text AS xid, EXTRACT(epoch FROM {waited})::float8 AS wait_s
        FROM pg_locks WHERE pid = ANY(%s) AND (NOT granted OR locktype = 'tuple')
        LIMIT 200""", [waiting])


def prepared(cur: Cursor[Row], info: Row, component: PostgresComponent) -> list[Row]:
    """Prepared (two-phase) transactions, oldest first: they hold locks and the xmin
    horizon with no session to terminate (pg_blocking_pids reports them as pid 0)."""
    return _rows(cur, """
        SELECT gid, transaction::text AS xid, owner, database,
               EXTRACT(epoch FROM now() - prepared)::float8 AS age_s,
               age(transaction)::bigint AS xmin_age
        FROM pg_prepared_xacts ORDER BY prepared LIMIT %s""", [MAX_ROWS])


def databases(cur: Cursor[Row], info: Row, component: PostgresComponent) -> Row:
    """Cache hits of this database and transaction-id age of every database."""
    stats = _rows(cur, """
        SELECT blks_hit, blks_read, stats_reset FROM pg_stat_database
        WHERE datname = current_database()""")
    ages = _rows(cur, """
        SELECT datname, age(datfrozenxid)::bigint AS age FROM pg_database
        ORDER BY 2 DESC LIMIT 5""")
    return {"cache": stats[0] if stats else None, "xid": ages}


def tables(cur: Cursor[Row], info: Row, component: PostgresComponent) -> list[Row]:
    """Scan and dead-tuple statistics of the larger user tables, with their column
    names: an index is only suggested on columns that exist (statement text alone
    mistakes a cast's type, `total::text`, for a column)."""
    return _rows(cur, """
        SELECT quote_ident(s.schemaname) || '.' || quote_ident(s.relname) AS table,
               s.relname, s.seq_scan, s.seq_tup_read,
               coalesce(s.idx_scan, 0) AS idx_scan, s.n_live_tup, s.n_dead_tup,
               s.last_autovacuum, s.last_vacuum, s.autovacuum_count,
               EXISTS (SELECT 1 FROM unnest(c.reloptions) o  -- stored as written: off, 0, no…
                       WHERE o ~* '^autovacuum_enabled=(f|fa|fal|fals|false|n|no|of|off|0)$')
                 AS autovacuum_disabled,
               c.relpages::bigint * current_setting('block_size')::int AS bytes,
               (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                WHERE a.attrelid = s.relid AND a.attnum > 0 AND NOT a.attisdropped
               ) AS columns
        FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
        WHERE s.n_live_tup + s.n_dead_tup >= %s
        ORDER BY s.n_live_tup + s.n_dead_tup DESC LIMIT 200""", [component.min_table_rows])


def indexes(cur: Cursor[Row], info: Row, component: PostgresComponent) -> Row:
    """Never-scanned non-unique indexes and groups of identical indexes."""
    unused = _rows(cur, """
        SELECT quote_ident(s.schemaname) || '.' || quote_ident(s.relname) AS table,
               quote_ident(s.schemaname) || '.' || quote_ident(s.indexrelname) AS index,
               c.relpages::bigint * current_setting('block_size')::int AS bytes,
               pg_get_indexdef(s.indexrelid) AS definition, i.indisvalid AS valid
        FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
        JOIN pg_class c ON c.oid = s.indexrelid
        WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = s.indexrelid)
        ORDER BY 3 DESC LIMIT %s""", [MAX_ROWS])
    # The index to keep comes first: one backing a constraint (it cannot simply be
    # dropped), then a unique one (it enforces more), then a valid one, then the oldest.
    order = ("ORDER BY k.conname IS NULL, NOT i.indisunique, NOT i.indisvalid, "
             "i.indexrelid")
    duplicate = _rows(cur, f"""
        SELECT i.indrelid::regclass::text AS table,
               array_agg(i.indexrelid::regclass::text {order}) AS indexes,
               array_agg(pg_get_indexdef(i.indexrelid) {order}) AS definitions,
               array_agg(quote_ident(k.conname) {order}) AS constraints,
               sum(c.relpages)::bigint * current_setting('block_size')::int AS bytes
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                                  AND k.contype IN ('p', 'u', 'x')
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%%'
        GROUP BY i.indrelid, i.indkey::text, i.indclass::text, i.indcollation::text,
                 c.relam, coalesce(pg_get_expr(i.indexprs, i.indrelid), ''),
                 coalesce(pg_get_expr(i.indpred, i.indrelid), '')
        HAVING count(*) > 1 LIMIT %s""", [MAX_ROWS])
    return {"unused": unused, "duplicate": duplicate}


def statements(cur: Cursor[Row], info: Row, component: PostgresComponent) -> Row:
    """Top statements by mean and by total time, when pg_stat_statements is installed."""
    preloaded = "pg_stat_statements" in info["settings"].get("shared_preload_libraries", "")
    ext = _rows(cur, """
        SELECT n.nspname AS schema FROM pg_extension e
        JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'""")
    out: Row = {"preloaded": preloaded, "installed": bool(ext), "rows": []}
    if not (ext and preloaded):
        return out
    from psycopg import sql

    mean = "mean_exec_time" if info["version_num"] >= 130000 else "mean_time"
    total = "total_exec_time" if info["version_num"] >= 130000 else "total_time"
    query = sql.SQL("""
        WITH s AS (SELECT queryid::text AS queryid, calls, {mean}::float8 AS mean_ms,
                          {total}::float8 AS total_ms, rows, left(query, {chars}) AS query,
                          (SELECT datname FROM pg_database d WHERE d.oid = dbid) AS database
                   FROM {view} WHERE calls > 0)
        (SELECT * FROM s ORDER BY mean_ms DESC LIMIT {limit})
        UNION (SELECT * FROM s ORDER BY total_ms DESC LIMIT {limit})""").format(
        mean=sql.Identifier(mean), total=sql.Identifier(total),
        chars=sql.Literal(QUERY_CHARS * 2), limit=sql.Literal(20),
        view=sql.Identifier(ext[0]["schema"], "pg_stat_statements"))
    cur.execute(query)
    out["rows"] = [{k: _plain(v) for k, v in row.items()} for row in cur.fetchall()]
    for row in out["rows"]:
        row["query"] = scrub_sql(row["query"])
    return out


def replication(cur: Cursor[Row], info: Row, component: PostgresComponent) -> Row:
    """Lag of each replica (on a primary), of each slot, and of this server if a standby."""
    if info["in_recovery"]:
        head = "pg_last_wal_receive_lsn()"
        standby = _rows(cur, """
            SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(),
                                   pg_last_wal_replay_lsn())::bigint AS lag_bytes,
                   EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
                     AS lag_s,
                   pg_is_wal_replay_paused() AS paused""")[0]
        replicas: list[Row] = []
    else:
        head = "pg_current_wal_lsn()"
        standby = None
        replicas = _rows(cur, f"""
            SELECT application_name, host(client_addr) AS client_addr, state, sync_state,
                   pg_wal_lsn_diff({head}, replay_lsn)::bigint AS lag_bytes,
                   EXTRACT(epoch FROM replay_lag)::float8 AS lag_s
            FROM pg_stat_replication LIMIT %s""", [MAX_ROWS])
    slots = _rows(cur, f"""
        SELECT slot_name, slot_type, active, wal_status,
               pg_wal_lsn_diff({head}, restart_lsn)::bigint AS lag_bytes
        FROM pg_replication_slots LIMIT %s""", [MAX_ROWS])
    return {"replicas": replicas, "slots": slots, "standby": standby}


def unique_check(cur: Cursor[Row], check: UniqueCheck) -> Row:
    """One declared uniqueness check: duplicate values, extra rows, a few samples. Any
    failure (missing table, no privilege, a type without equality, a lock or statement
    timeout) is this entry's error, not the snapshot's."""
    from psycopg import Error, sql

    from stackmedic import redact

    table = sql.Identifier(*check.table.split(".", 1))
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in check.columns)
    not_null = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(c))
                                    for c in check.columns)
    groups = sql.SQL("SELECT {cols}, count(*) AS n FROM {table} WHERE {nn} "
                     "GROUP BY {cols} HAVING count(*) > 1").format(
        cols=cols, table=table, nn=not_null)
    entry: Row = {"table": check.table, "columns": list(check.columns)}
    # One pass over the table: the totals ride along on the few sample rows.
    query = sql.SQL("SELECT *, count(*) OVER () AS values, sum(n - 1) OVER () AS extra "
                    "FROM ({g}) d ORDER BY n DESC LIMIT 5").format(g=groups)
    try:
        cur.execute(query)
        rows = cur.fetchall()
    except Error as err:
        entry["error"] = {"sqlstate": err.sqlstate, "message": redact.redact_text(
            str(err).splitlines()[0] if str(err) else type(err).__name__)}
        return entry
    entry["values"] = int(rows[0]["values"]) if rows else 0
    entry["extra_rows"] = int(rows[0]["extra"]) if rows else 0
    entry["samples"] = [{k: _sample(v) for k, v in row.items() if k not in ("values", "extra")}
                        for row in rows]
    return entry


SECTIONS = {"prepared": prepared, "databases": databases, "tables": tables, "indexes": indexes,
            "statements": statements, "replication": replication}
