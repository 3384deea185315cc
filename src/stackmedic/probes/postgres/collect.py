"""The `snapshot` collector: one connection, one pass over the statistics views.

Connection failures are facts, not exceptions: refused, timed out, starting up or
shutting down, authentication rejected (with the method the server asked for), a
database that does not exist (with those that do, read through `postgres` or
`template1`) and "too many clients" each come back as `error.kind`. A query that fails for lack of
privilege or on `statement_timeout` is recorded under `errors[section]` and the
rest of the snapshot still runs (the session is in autocommit, so nothing aborts).
"""

from __future__ import annotations

import getpass
import os
import re
import time
from typing import TYPE_CHECKING, Any

from stackmedic import redact
from stackmedic.checks import CollectContext, Facts
from stackmedic.probes.postgres import PostgresComponent, probe
from stackmedic.probes.postgres import queries as q

if TYPE_CHECKING:
    import psycopg

__all__ = ["classify_error", "snapshot", "target_of"]

# Phrases of libpq/server messages → what the failure means. Order matters: a
# message can mention both the host and the reason, the first match wins.
_KINDS = (
    ("invalid integer value", "config"),  # a dsn libpq parsed but cannot use
    ("invalid connection option", "config"),
    ("invalid sslmode value", "config"),
    ("too many clients", "too_many"),
    ("remaining connection slots are reserved", "too_many"),
    ("authentication failed", "auth"),
    ("no password supplied", "auth"),
    ("no pg_hba.conf entry", "auth"),
    ("does not exist", "auth"),  # role "x" does not exist (a database: _NO_DATABASE)
    ("is starting up", "starting"),
    ("not yet accepting connections", "starting"),
    ("is in recovery mode", "starting"),
    ("not accepting connections", "not_accepting"),  # a standby with hot_standby = off
    ("is shutting down", "shutting_down"),
    ("connection refused", "refused"),
    ("no such file or directory", "refused"),
    ("timeout expired", "timeout"),
    ("timed out", "timeout"),
)
# The server is up and admits the role, but the dsn names no existing database: neither
# a password nor pg_hba.conf is wrong. Checked before _KINDS (SQLSTATE 3D000).
_NO_DATABASE = re.compile(r'database ".*" does not exist')
# Where the databases that do exist can be listed from, in order: one short read-only
# session (a session on template1 briefly blocks CREATE DATABASE, hence last).
_MAINTENANCE_DBS = ("postgres", "template1")
_DATABASES_SQL = ("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate "
                  "AND has_database_privilege(datname, 'CONNECT') ORDER BY datname LIMIT 50")
_MESSAGE_CHARS = 500
_MARGIN_S = 0.5  # of the collector's deadline, kept to return the facts


def target_of(component: PostgresComponent) -> dict[str, Any]:
    """Host, port, user and database the DSN (or PG* variables) point at; no password."""
    from psycopg.conninfo import conninfo_to_dict

    redact.register_secret(os.environ.get("PGPASSWORD"))
    params = conninfo_to_dict(component.dsn or "")  # ProgrammingError on a garbled dsn
    redact.register_secret(str(params.get("password") or "") or None)
    host = str(params.get("host") or os.environ.get("PGHOST") or "/var/run/postgresql")
    user = str(params.get("user") or os.environ.get("PGUSER") or getpass.getuser())
    port = str(params.get("port") or os.environ.get("PGPORT") or 5432).split(",")[0]
    return {"host": host.split(",")[0],
            "port": int(port) if port.strip().isdigit() else port,  # libpq will say why
            "user": user,
            "database": str(params.get("dbname") or os.environ.get("PGDATABASE") or user)}


def classify_error(message: str) -> str:
    """The kind of a connection failure, from libpq's message."""
    lowered = message.lower()
    if _NO_DATABASE.search(lowered):
        return "no_database"
    return next((kind for phrase, kind in _KINDS if phrase in lowered), "other")


def _connect(component: PostgresComponent, ctx: CollectContext) -> psycopg.Connection[q.Row]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from psycopg.rows import dict_row

    budget_ms = int(ctx.remaining() * 1000)
    options = " ".join(filter(None, [
        str(conninfo_to_dict(component.dsn or "").get("options") or ""),
        "-c default_transaction_read_only=on",
        "-c TimeZone=UTC",  # timestamps in the facts are UTC, whatever the server's zone
        f"-c statement_timeout={max(1, min(component.statement_timeout_ms, budget_ms))}",
        f"-c lock_timeout={max(1, min(component.lock_timeout_ms, budget_ms))}"]))
    conninfo = make_conninfo(component.dsn or "", application_name="stackmedic",
                             connect_timeout=max(1, int(ctx.remaining() * 0.8)),
                             options=options)
    return psycopg.connect(conninfo, autocommit=True, row_factory=dict_row)


@probe.collector("snapshot", timeout=5.0)
def snapshot(component: PostgresComponent, ctx: CollectContext) -> Facts:
    """One read-only session: activity, locks, statistics, replication, declared checks."""
    import psycopg

    started = time.monotonic()
    try:
        target = target_of(component)
    except psycopg.Error as err:  # a dsn libpq cannot parse: say so, never a traceback
        return {"connected": False, "target": {"host": None, "port": None, "user": None,
                                               "database": None},
                "error": {"kind": "config", "sqlstate": None,
                          "message": redact.redact_text(str(err).strip())[:_MESSAGE_CHARS]},
                "connect_ms": 0.0}
    try:
        conn = _connect(component, ctx)
    except psycopg.Error as err:
        message = redact.redact_text(str(err).strip())[:_MESSAGE_CHARS]
        kind = classify_error(message)
        error: dict[str, Any] = {"kind": kind, "message": message,
                                 "sqlstate": getattr(err, "sqlstate", None)}
        if kind == "no_database":
            error["databases"] = _databases(component, ctx)
        if kind == "auth" and isinstance(target["port"], int):
            from stackmedic.probes.postgres._wire import auth_method

            error["auth_method"] = auth_method(target["host"], target["port"], target["user"],
                                               target["database"], min(1.0, ctx.remaining()))
        return {"connected": False, "target": target, "error": error,
                "connect_ms": round((time.monotonic() - started) * 1000, 1)}
    with conn:
        return _read(conn, component, ctx, target, started)


def _databases(component: PostgresComponent, ctx: CollectContext) -> list[str] | None:
    """The databases the role may connect to, listed through a maintenance database (the
    dsn's own does not exist); None if none admits it or the deadline is near."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    for dbname in _MAINTENANCE_DBS:
        if ctx.remaining() < 1.0 + _MARGIN_S:
            return None
        other = component.model_copy(
            update={"dsn": make_conninfo(component.dsn or "", dbname=dbname)})
        try:
            with _connect(other, ctx) as conn:
                return [str(row["datname"]) for row in conn.execute(_DATABASES_SQL)]
        except psycopg.Error:
            continue
    return None


def _read(conn: psycopg.Connection[q.Row], component: PostgresComponent,
          ctx: CollectContext, target: dict[str, Any], started: float) -> Facts:
    import psycopg

    facts: Facts = {"connected": True, "target": target,
                    "connect_ms": round((time.monotonic() - started) * 1000, 1), "errors": {}}
    cur = conn.cursor()
    timeout_ms = min(component.statement_timeout_ms, int(ctx.remaining() * 1000))

    def section(name: str, func: Any, *args: Any) -> Any:
        # Each query gets at most what is left of the deadline (less a margin to send the
        # facts back): a slow section fails alone instead of the collector being abandoned
        # with every verdict lost.
        nonlocal timeout_ms
        left_ms = int((ctx.remaining() - _MARGIN_S) * 1000)
        try:
            if left_ms < 10:
                facts["errors"][name] = {"sqlstate": None, "message": "skipped: the run's "
                                         "deadline was reached"}
                return None
            if left_ms < timeout_ms:
                timeout_ms = left_ms
                cur.execute(f"SET statement_timeout = {timeout_ms}")
                cur.execute(f"SET lock_timeout = {min(component.lock_timeout_ms, timeout_ms)}")
            return func(cur, *args)
        except psycopg.Error as err:
            facts["errors"][name] = {"sqlstate": err.sqlstate, "message": redact.redact_text(
                str(err).splitlines()[0] if str(err) else type(err).__name__)}
            return None

    first = section("deadlocks", q.deadlock_counter)
    first_at = time.monotonic()
    info = facts["server"] = section("server", q.server_info)
    if info is None:
        return facts
    facts["activity"] = section("activity", q.activity, info, component)
    sessions = (facts["activity"] or {}).get("sessions", [])
    waiting = [s["pid"] for s in sessions if s.get("blocked_by")]
    facts["locks"] = section("locks", q.locks, info, component, waiting)
    for name, func in q.SECTIONS.items():
        facts[name] = section(name, func, info, component)
    facts["unique"] = []
    for check in component.unique:  # each under its own share of the deadline
        entry = section("unique", q.unique_check, check)
        facts["unique"].append(entry or {"table": check.table, "columns": list(check.columns),
                                         "error": facts["errors"].pop("unique")})
    # The second deadlock sample closes the interval; never wait past our deadline.
    pause = component.deadlock_sample_ms / 1000 - (time.monotonic() - first_at)
    time.sleep(max(0.0, min(pause, ctx.remaining() - 0.5)))
    second = section("deadlocks", q.deadlock_counter)
    if first is not None and second is not None:
        facts["deadlocks"] = {"before": first["deadlocks"], "after": second["deadlocks"],
                              "interval_s": round(time.monotonic() - first_at, 3),
                              "stats_reset": first["stats_reset"]}
        # For the doctor's history: the next run counts the deadlocks in between.
        facts["counters"] = {"epoch": second["epoch"], **{
            f"deadlocks:{key}": count for key, count in second["per_database"].items()}}
    facts["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    return facts
