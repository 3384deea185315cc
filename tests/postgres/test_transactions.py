"""Long-open transactions induced for real: a batch looping inside one transaction, a
forgotten prepared transaction, and what must not be reported (short transactions under
load, a session another rule already reports)."""

from __future__ import annotations

import contextlib
import threading

from stackmedic.findings import Severity
from stackmedic.testing import with_symptom
from tests.fixtures.postgres import PostgresServer
from tests.postgres.conftest import Sessions, doctor, new_database, pgbench, psycopg, wait_for
from tests.postgres.test_sessions import activity, filled, one

SYMPTOM = "db.transaction.long_open"


def test_batch_looping_in_one_transaction_is_reported(
        pg_busy: PostgresServer, sessions: Sessions) -> None:
    """A session running short statements in one old transaction is reported under this
    id only: its statements are too young for db.query.long_running and it is never idle
    long enough for db.connections.idle_in_transaction."""
    pg_busy.psql("DROP TABLE IF EXISTS batch_rows; CREATE TABLE batch_rows (v int)")
    conn = sessions.open(pg_busy.dsn(), app="nightly-batch", autocommit=False)
    pid = conn.info.backend_pid
    stop = threading.Event()

    def loop() -> None:
        with contextlib.suppress(psycopg.Error):
            while not stop.is_set():
                conn.execute("INSERT INTO batch_rows SELECT 1 FROM pg_sleep(0.005) "
                             "/* batch step */")

    looping = threading.Thread(target=loop, daemon=True)
    looping.start()
    try:
        # A statement that began well after the transaction did: the loop is inside it.
        wait_for(lambda: activity(pg_busy, f"pid = {pid} AND xact_start < now() - "
                                  "'0.5s'::interval AND query_start > xact_start + "
                                  "'0.3s'::interval"), "an old transaction still looping")
        run = doctor(pg_busy.dsn(), {SYMPTOM: {"warning": 0.2}})
    finally:
        stop.set()
        looping.join(10)
    finding = one(run, SYMPTOM)
    assert finding.severity is Severity.WARNING
    evidence = finding.evidence
    assert (evidence["pid"], evidence["application_name"]) == (pid, "nightly-batch")
    assert evidence["usename"] == "postgres" and evidence["client_addr"] == "127.0.0.1"
    assert evidence["state"] in ("active", "idle in transaction")
    assert evidence["query_age_s"] < evidence["xact_age_s"]
    assert "batch step" in evidence["query"]
    assert isinstance(evidence["xmin_age"], int)  # it wrote, so it holds an xid
    assert f"SELECT pg_terminate_backend({pid});" in filled(finding)
    for other in ("db.query.long_running", "db.connections.idle_in_transaction"):
        assert [f.severity for f in with_symptom(run.findings, other)] == [Severity.OK]


def test_forgotten_prepared_transaction_is_reported_by_gid(pg_busy: PostgresServer) -> None:
    """A prepared transaction nobody resolved is reported with its gid, owner, database
    and age; the remedy ends it in its own database, never with pg_terminate_backend."""
    new_database(pg_busy, "ledger", "CREATE TABLE entries (v int)")
    pg_busy.psql("BEGIN; INSERT INTO entries VALUES (1); PREPARE TRANSACTION 'orphan-7'",
                 dbname="ledger")
    try:
        wait_for(lambda: pg_busy.psql("SELECT gid FROM pg_prepared_xacts WHERE prepared < "
                                      "now() - '0.3s'::interval"), "an aged prepared xact")
        run = doctor(pg_busy.dsn(), {SYMPTOM: {"warning": 0.2}})
    finally:
        pg_busy.psql("ROLLBACK PREPARED 'orphan-7'", dbname="ledger")
    finding = one(run, SYMPTOM)
    assert finding.severity is Severity.WARNING
    evidence = finding.evidence
    assert (evidence["gid"], evidence["usename"], evidence["database"]) == \
        ("orphan-7", "postgres", "ledger")
    assert evidence["state"] == "prepared" and evidence["xact_age_s"] >= 0.3
    assert isinstance(evidence["xmin_age"], int)
    steps = filled(finding)
    lines = [line.strip() for line in steps.splitlines()]
    at = lines.index("\\connect ledger")  # then, on the next line, in the same block:
    assert lines[at + 1].startswith("ROLLBACK PREPARED 'orphan-7';")
    assert "COMMIT PREPARED 'orphan-7'" in steps and "pg_terminate_backend" not in steps


def test_idle_in_transaction_session_is_not_reported_twice(
        pg_busy: PostgresServer, sessions: Sessions) -> None:
    """A session reported as idle in transaction is not reported again under this id,
    unless its transaction's age is the worse verdict (then it is, as critical)."""
    conn = sessions.open(pg_busy.dsn(), app="forgetful", autocommit=False)
    conn.execute("SELECT 1 AS forgotten")
    pid = conn.info.backend_pid
    wait_for(lambda: "idle in transaction" in activity(pg_busy, f"pid = {pid} AND "
                                                       "state_change < now() - '0.3s'::interval"),
             "an aged idle transaction")
    idle = {"db.connections.idle_in_transaction": {"warning": 0.2}}
    run = doctor(pg_busy.dsn(), {**idle, SYMPTOM: {"warning": 0.2}})
    assert one(run, "db.connections.idle_in_transaction").evidence["pid"] == pid
    assert one(run, SYMPTOM).severity is Severity.OK
    run = doctor(pg_busy.dsn(), {**idle, SYMPTOM: {"warning": 0.1, "critical": 0.2}})
    assert one(run, "db.connections.idle_in_transaction").severity is Severity.WARNING
    worse = one(run, SYMPTOM)
    assert (worse.severity, worse.evidence["pid"]) == (Severity.CRITICAL, pid)


def test_short_transactions_under_load_are_not_reported(pg_busy: PostgresServer) -> None:
    """Four pgbench clients committing small write transactions give an ok verdict."""
    pg_busy.psql("DROP TABLE IF EXISTS ticks; CREATE TABLE ticks (v int)")
    script = pg_busy.dir / "short.sql"
    script.write_text("BEGIN;\nINSERT INTO ticks VALUES (1);\nSELECT count(*) FROM pg_class;\n"
                      "END;\n")
    load = pgbench(pg_busy, "-n", "-f", str(script), "-c", "4", "-T", "60")
    try:
        wait_for(lambda: int(pg_busy.psql("SELECT count(*) FROM pg_stat_activity WHERE "
                                          "application_name = 'pgbench'")) == 4,
                 "pgbench clients")
        run = doctor(pg_busy.dsn(), {SYMPTOM: {"warning": 1.0}})
    finally:
        load.terminate()
        load.wait(30)
    assert int(pg_busy.psql("SELECT count(*) FROM ticks")) > 0
    assert one(run, SYMPTOM).severity is Severity.OK


def test_dead_tuples_are_explained_by_the_transaction_holding_vacuum_back(
        pg_busy: PostgresServer, sessions: Sessions) -> None:
    """An old transaction holds the xmin horizon, so deleted rows stay dead: the dead-tuple
    finding is explained by the long-open transaction on the same server, the root cause."""
    dsn = new_database(pg_busy, "held", """
        CREATE TABLE churn (id int, pad text);
        INSERT INTO churn SELECT g, 'x' FROM generate_series(1, 50000) g""")
    holder = sessions.open(dsn, app="forgotten-report", autocommit=False)
    holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    holder.execute("SELECT count(*) FROM churn")  # takes the snapshot that holds xmin
    pg_busy.psql("DELETE FROM churn WHERE id <= 30000", dbname="held")
    pg_busy.psql("VACUUM churn", dbname="held")  # removes nothing: the snapshot needs them
    wait_for(lambda: activity(pg_busy, "application_name = 'forgotten-report' AND "
                              "xact_start < now() - '0.5s'::interval"), "an old transaction")
    run = doctor(dsn, {SYMPTOM: {"warning": 0.2},
                       "db.connections.idle_in_transaction": {"warning": 3600, "critical": 7200}})
    dead = [f for f in with_symptom(run.findings, "db.vacuum.dead_tuples") if f.is_problem]
    held = one(run, SYMPTOM)
    assert dead and held.severity is Severity.WARNING
    assert all(held.fingerprint in f.explained_by for f in dead)
    assert held.root_cause
