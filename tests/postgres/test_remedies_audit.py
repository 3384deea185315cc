"""Remedies of the postgres runbooks, run as filled against a throwaway server: they
must work as written and must not lock a table, change data or miss their target."""

from __future__ import annotations

import re

import psycopg
import pytest

from stackmedic.findings import Severity
from stackmedic.testing import with_symptom
from tests.fixtures.postgres import PostgresServer
from tests.postgres.conftest import Sessions, doctor, new_database, wait_for
from tests.postgres.test_sessions import filled, one

ROLE = "Night Batch"  # upper case and a space: unusable unless quoted


def test_dropping_a_duplicate_constraint_gives_up_instead_of_queueing(
        pg_stats: PostgresServer, sessions: Sessions) -> None:
    """DROP CONSTRAINT needs an ACCESS EXCLUSIVE lock: behind a reader's open transaction
    the remedy fails on its lock_timeout (instead of queueing every later reader and
    writer), and succeeds once the table is free."""
    dsn = new_database(pg_stats, "dupcon", "CREATE TABLE kk (id int PRIMARY KEY); "
                                           "ALTER TABLE kk ADD CONSTRAINT kk_id_key UNIQUE (id)")
    [finding] = with_symptom(doctor(dsn).findings, "db.index.duplicate")
    drop = finding.evidence["drop_index"]
    assert drop in filled(finding)
    reader = sessions.open(dsn, autocommit=False)
    reader.execute("SELECT * FROM kk")
    # The statement_timeout only keeps the test from hanging if no lock_timeout is set.
    with psycopg.connect(dsn, autocommit=True, options="-c statement_timeout=30s") as conn:
        with pytest.raises(psycopg.errors.LockNotAvailable):
            conn.execute(drop)
        reader.rollback()
        conn.execute(drop)
        assert conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'kk'::regclass"
                            ).fetchall() == [("kk_pkey",)]


def test_the_plan_of_a_writing_statement_does_not_run_it(
        pg_stats: PostgresServer, sessions: Sessions) -> None:
    """When the costliest statement that scans a table is a DELETE filtered on an
    expression, the suggested plan is a plain EXPLAIN: EXPLAIN ANALYZE would delete."""
    dsn = new_database(pg_stats, "plans", """
        CREATE EXTENSION pg_stat_statements;
        CREATE TABLE jobs AS SELECT g AS id, 'j' || g AS name FROM generate_series(1, 5000) g;
        ANALYZE jobs""")
    conn = sessions.open(dsn)
    for i in range(6):
        conn.execute("DELETE FROM jobs WHERE lower(name) = %s", [f"none{i}"])
    conn.close()  # the backend flushes its statistics as it exits
    run = doctor(dsn, min_table_rows=1000)
    [finding] = [f for f in with_symptom(run.findings, "db.index.missing")
                 if f.severity is not Severity.OK]
    plan = finding.evidence["suggested_index"]
    assert plan.startswith("EXPLAIN DELETE FROM jobs") and plan in filled(finding)
    check = sessions.open(dsn)
    shown = check.execute(re.sub(r"\$\d+", "%s", plan.split(";", 1)[0]), ["j1"]).fetchall()
    assert "Seq Scan on jobs" in str(shown)
    assert check.execute("SELECT count(*) FROM jobs WHERE name = 'j1'").fetchone() == (1,)


def test_role_settings_name_the_role_quoted(pg_stats: PostgresServer,
                                            sessions: Sessions) -> None:
    """The ALTER ROLE steps of a long-running statement and of a session idle in a
    transaction run as filled for a role whose name needs quoting."""
    pg_stats.psql(f"CREATE ROLE \"{ROLE}\" LOGIN")
    dsn = pg_stats.dsn(user=ROLE.replace(" ", "%20"))
    busy = sessions.open(dsn, app="night-report")
    sessions.background(busy, "SELECT pg_sleep(60)")
    idle = sessions.open(dsn, app="night-loader", autocommit=False)
    idle.execute("SELECT 1")
    wait_for(lambda: pg_stats.psql(
        f"SELECT 1 FROM pg_stat_activity WHERE usename = '{ROLE}' AND state = 'active' AND "
        "query_start < now() - '0.3s'::interval"), "a long statement")
    run = doctor(pg_stats.dsn(), {"db.query.long_running": {"warning": 0.2},
                                  "db.connections.idle_in_transaction": {"warning": 0.0}})
    for symptom in ("db.query.long_running", "db.connections.idle_in_transaction"):
        [step] = [line for line in filled(one(run, symptom)).splitlines()
                  if "ALTER ROLE" in line]
        statement = step.split("`")[1] if "`" in step else step.strip()
        pg_stats.psql(statement.replace("<longest legitimate, e.g. 30s>", "30s"))
    config = pg_stats.psql(f"SELECT rolconfig FROM pg_roles WHERE rolname = '{ROLE}'")
    assert "statement_timeout=30s" in config
    assert "idle_in_transaction_session_timeout=5min" in config
