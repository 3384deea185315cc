"""Session faults induced for real on throwaway servers: down, auth, slots, idle, locks."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from stackmedic.doctor import Run
from stackmedic.findings import Finding, Severity
from stackmedic.history import History
from stackmedic.runbooks import load_runbook, sections
from stackmedic.testing import problems, with_symptom
from tests.fixtures.postgres import PostgresServer
from tests.postgres.conftest import Sessions, doctor, psycopg, wait_for


def one(run: Run, symptom: str) -> Finding:
    """The single finding of `symptom` in `run` (fails listing what was found)."""
    found = with_symptom(run.findings, symptom)
    assert len(found) == 1, [(f.symptom, f.severity, f.summary) for f in run.findings]
    return found[0]


def filled(finding: Finding) -> str:
    """The finding's remedy steps, asserting every `{evidence.*}` placeholder of its
    runbook's Fix section was filled (an unfilled one renders as `<key>`)."""
    fix = sections(load_runbook(finding.symptom))["Fix"]
    wanted = set(re.findall(r"\{evidence\.(\w+)\}", fix))
    missing = {k for k in wanted if not isinstance(finding.evidence.get(k), str | int | float)}
    assert not missing, (finding.symptom, missing, finding.evidence)
    assert finding.remedy is not None and finding.remedy.steps
    return "\n".join(finding.remedy.steps)


def activity(server: PostgresServer, where: str) -> str:
    return server.psql(f"SELECT pid, wait_event_type, state FROM pg_stat_activity WHERE {where}")


def test_stopped_server_is_down(pg_factory: Any) -> None:
    """A stopped server yields a critical db.down saying the connection was refused."""
    server = pg_factory()
    server.stop()
    finding = one(doctor(server.dsn()), "db.down")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["kind"] == "refused"
    assert str(server.port) in filled(finding)


def test_silent_listener_is_down_with_timeout() -> None:
    """A port that accepts but never answers gives db.down (timeout) within the budget."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        finding = one(doctor(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=3),
                      "db.down")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["kind"] == "timeout"


def test_shutting_down_server_is_down(pg_factory: Any, sessions: Sessions) -> None:
    """A server in a smart shutdown (waiting for a client) is reported down, shutting down."""
    server = pg_factory()
    sessions.open(server.dsn())
    subprocess.run(["runuser", "-u", "postgres", "--", str(server.bin / "pg_ctl"), "-D",
                    str(server.data), "-m", "smart", "-W", "stop"], check=True,
                   capture_output=True)
    wait_for(lambda: "shutting down" in (server.dir / "server.log").read_text()
             or "shutdown request" in (server.dir / "server.log").read_text(), "smart shutdown")
    finding = one(doctor(server.dsn()), "db.down")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["kind"] == "shutting_down"


def test_wrong_password_names_role_and_method_never_the_password(pg_factory: Any) -> None:
    """A wrong password under scram gives db.auth.failed naming role and method, no secret."""
    server = pg_factory(password="right-horse-battery")
    run = doctor(server.dsn(password="wrong-staple-9931"))
    finding = one(run, "db.auth.failed")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["user"] == "postgres"
    assert finding.evidence["auth_method"] == "scram-sha-256"
    assert "scram-sha-256" in finding.summary
    assert "'postgres'" in filled(finding)
    dumped = json.dumps([f.to_dict() for f in run.findings]) + json.dumps(run.facts, default=str)
    assert "wrong-staple-9931" not in dumped and "right-horse-battery" not in dumped
    assert not with_symptom(run.findings, "db.down")


def test_nearly_full_server_names_the_holder(pg_busy: PostgresServer, sessions: Sessions) -> None:
    """With 15 of 17 slots held by one app, db.connections.exhausted names that app."""
    for _ in range(15):
        sessions.open(pg_busy.dsn(), app="leaky-app")
    finding = one(doctor(pg_busy.dsn()), "db.connections.exhausted")
    assert finding.severity in (Severity.WARNING, Severity.CRITICAL)
    assert finding.evidence["available"] == 17
    assert finding.evidence["top_application"] == "leaky-app"
    assert finding.evidence["top_count"] == 15
    assert "application_name = 'leaky-app' AND usename = 'postgres'" in filled(finding)


def test_unprivileged_role_still_counts_every_slot(
        pg_busy: PostgresServer, sessions: Sessions) -> None:
    """A role without pg_monitor cannot see other roles' session details, yet the slots
    those sessions hold still count: 14 of them plus its own is a warning, not ok."""
    pg_busy.psql("DROP ROLE IF EXISTS nobody; CREATE ROLE nobody LOGIN")
    for _ in range(14):
        sessions.open(pg_busy.dsn(), app="hog")
    finding = one(doctor(pg_busy.dsn(user="nobody")), "db.connections.exhausted")
    assert finding.severity in (Severity.WARNING, Severity.CRITICAL)
    assert finding.evidence["in_use"] >= 15
    assert finding.evidence["hidden_sessions"] >= 14
    assert (finding.evidence["top_application"], finding.evidence["top_count"]) == ("hog", 14)
    assert finding.evidence["grant"] == "GRANT pg_monitor TO nobody;"


def test_full_server_is_exhausted_not_down(pg_busy: PostgresServer, sessions: Sessions) -> None:
    """When every non-reserved slot is taken, a normal role gets critical exhaustion."""
    pg_busy.psql("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') THEN "
                 "CREATE ROLE app LOGIN; END IF; END$$")
    for _ in range(17):
        sessions.open(pg_busy.dsn(user="app"), app="hog")
    run = doctor(pg_busy.dsn(user="app"))
    finding = one(run, "db.connections.exhausted")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["kind"] == "too_many"
    assert not with_symptom(run.findings, "db.down")
    assert "WHERE backend_type = 'client backend'\n" in filled(finding)


def test_idle_in_transaction_session_is_named(pg_busy: PostgresServer, sessions: Sessions) -> None:
    """A session left idle in a transaction is reported with its pid, app and statement."""
    conn = sessions.open(pg_busy.dsn(), app="forgetful", autocommit=False)
    conn.execute("SELECT 42 AS forgotten")
    pid = conn.info.backend_pid
    wait_for(lambda: "idle in transaction" in activity(pg_busy, f"pid = {pid} AND "
                                                       "state_change < now() - '0.3s'::interval"),
             "an aged idle transaction")
    run = doctor(pg_busy.dsn(), {"db.connections.idle_in_transaction": {"warning": 0.2}})
    finding = one(run, "db.connections.idle_in_transaction")
    assert finding.severity is Severity.WARNING
    assert finding.evidence["pid"] == pid
    assert finding.evidence["application_name"] == "forgetful"
    assert "forgotten" in finding.evidence["query"]
    assert f"pg_terminate_backend({pid})" in filled(finding)


def test_password_in_a_statement_never_shows(pg_busy: PostgresServer, sessions: Sessions) -> None:
    """A session idle in transaction after `ALTER ROLE … PASSWORD '…'` is reported, but the
    password literal appears in no finding and no recorded fact."""
    pg_busy.psql("DROP ROLE IF EXISTS rotated; CREATE ROLE rotated LOGIN")
    conn = sessions.open(pg_busy.dsn(), app="rotator", autocommit=False)
    conn.execute("ALTER ROLE rotated PASSWORD 'Hunter2-rotated-77'")
    pid = conn.info.backend_pid
    wait_for(lambda: "idle in transaction" in activity(pg_busy, f"pid = {pid}"), "idle txn")
    run = doctor(pg_busy.dsn(), {"db.connections.idle_in_transaction": {"warning": 0.0}})
    found = [f for f in with_symptom(run.findings, "db.connections.idle_in_transaction")
             if f.evidence.get("pid") == pid]
    assert found and "ALTER ROLE rotated PASSWORD '***'" in found[0].evidence["query"]
    dumped = json.dumps([f.to_dict() for f in run.findings]) + json.dumps(run.facts, default=str)
    assert "Hunter2-rotated-77" not in dumped


def test_many_long_idle_sessions_from_one_client_are_a_leak(
        pg_busy: PostgresServer, sessions: Sessions) -> None:
    """Six long-idle sessions of one app on a 17-slot server are reported as a leak."""
    for _ in range(6):
        sessions.open(pg_busy.dsn(), app="pool-leak")
    wait_for(lambda: activity(pg_busy, "application_name = 'pool-leak' AND "
                              "state_change < now() - '0.3s'::interval").count("\n") == 6,
             "six aged idle sessions")
    finding = one(doctor(pg_busy.dsn(), idle_leak_age_s=0.2), "db.connections.idle_leak")
    assert finding.severity is Severity.WARNING
    assert finding.evidence["application_name"] == "pool-leak"
    assert finding.evidence["count"] == 6
    assert ("client_addr = '127.0.0.1' AND application_name = 'pool-leak' AND usename = "
            "'postgres'\n") in filled(finding)


def test_lock_chain_of_three_resolves_to_head(pg_busy: PostgresServer, sessions: Sessions) -> None:
    """A blocks B and B blocks C: one finding whose head blocker is A, chain C→B→A."""
    pg_busy.psql("DROP TABLE IF EXISTS accounts; CREATE TABLE accounts (id int PRIMARY KEY, "
                 "v int); INSERT INTO accounts VALUES (1, 0), (2, 0)")
    a = sessions.open(pg_busy.dsn(), app="holder", autocommit=False)
    b = sessions.open(pg_busy.dsn(), app="middle", autocommit=False)
    c = sessions.open(pg_busy.dsn(), app="victim", autocommit=False)
    a.execute("UPDATE accounts SET v = 1 WHERE id = 1")
    b.execute("UPDATE accounts SET v = 2 WHERE id = 2")
    sessions.background(b, "UPDATE accounts SET v = 2 WHERE id = 1")
    sessions.background(c, "UPDATE accounts SET v = 3 WHERE id = 2")
    pids = [s.info.backend_pid for s in (a, b, c)]
    wait_for(lambda: activity(pg_busy, f"pid IN ({pids[1]}, {pids[2]}) AND wait_event_type = "
                              "'Lock' AND query_start < now() - '0.3s'::interval")
             .count("\n") == 2, "two sessions waiting on locks")
    run = doctor(pg_busy.dsn(), {"db.locks.blocking": {"warning": 0.2}})
    finding = one(run, "db.locks.blocking")
    assert finding.severity is Severity.WARNING
    assert finding.evidence["head_pid"] == pids[0]
    assert finding.evidence["head_application"] == "holder"
    assert finding.evidence["blocked_count"] == 2
    assert finding.evidence["chain"] == [pids[2], pids[1], pids[0]]
    assert "UPDATE accounts" in finding.evidence["head_query"]
    assert finding.evidence["blocked_pid"] in pids[1:]
    assert "UPDATE accounts" in finding.evidence["blocked_query"]
    assert finding.evidence["lock_mode"] == "ShareLock"  # on the blocker's transaction id
    assert finding.evidence["relation"] == "accounts"
    assert f"pg_terminate_backend({pids[0]})" in filled(finding)
    a.rollback()


def test_the_head_of_a_lock_queue_is_the_root_cause_and_its_victims_are_not_blamed(
        pg_busy: PostgresServer, sessions: Sessions) -> None:
    """A session idle in transaction holds a row lock that an UPDATE waits on: the waiting
    UPDATE is not reported as long-running or long-open (ending it would fix nothing),
    and the idle session, matched by pid to the head of the queue, is the root cause."""
    pg_busy.psql("DROP TABLE IF EXISTS seats; CREATE TABLE seats (id int PRIMARY KEY, v int); "
                 "INSERT INTO seats VALUES (1, 0)")
    holder = sessions.open(pg_busy.dsn(), app="forgotten", autocommit=False)
    victim = sessions.open(pg_busy.dsn(), app="checkout-api", autocommit=False)
    holder.execute("UPDATE seats SET v = 1 WHERE id = 1")
    sessions.background(victim, "UPDATE seats SET v = 2 WHERE id = 1")
    head, waiting = holder.info.backend_pid, victim.info.backend_pid
    wait_for(lambda: activity(pg_busy, f"pid = {waiting} AND wait_event_type = 'Lock' AND "
                              "xact_start < now() - '0.5s'::interval"), "a waiting UPDATE")
    low = {"warning": 0.2}
    run = doctor(pg_busy.dsn(), {"db.locks.blocking": low, "db.query.long_running": low,
                                 "db.transaction.long_open": low,
                                 "db.connections.idle_in_transaction": low})
    blamed = [f for f in run.findings if f.is_problem and f.evidence.get("pid") == waiting]
    assert blamed == []
    blocking = one(run, "db.locks.blocking")
    idle = one(run, "db.connections.idle_in_transaction")
    assert idle.evidence["pid"] == head and idle.root_cause
    assert blocking.explained_by == (idle.fingerprint,)
    holder.rollback()


def test_prepared_transaction_blocking_is_rolled_back_not_terminated(
        pg_busy: PostgresServer, sessions: Sessions) -> None:
    """A forgotten prepared transaction holding a row lock heads the chain as pid 0: the
    remedy is ROLLBACK PREPARED of its gid, never pg_terminate_backend(0)."""
    pg_busy.psql("DROP TABLE IF EXISTS ledger2; CREATE TABLE ledger2 (id int PRIMARY KEY, "
                 "v int); INSERT INTO ledger2 VALUES (1, 0)")
    pg_busy.psql("BEGIN; UPDATE ledger2 SET v = 1 WHERE id = 1; PREPARE TRANSACTION 'tx-42'")
    try:
        waiter = sessions.open(pg_busy.dsn(), app="waiter")
        sessions.background(waiter, "UPDATE ledger2 SET v = 2 WHERE id = 1")
        pid = waiter.info.backend_pid
        wait_for(lambda: activity(pg_busy, f"pid = {pid} AND wait_event_type = 'Lock' AND "
                                  "query_start < now() - '0.3s'::interval"), "a lock wait")
        run = doctor(pg_busy.dsn(), {"db.locks.blocking": {"warning": 0.2}})
    finally:
        pg_busy.psql("ROLLBACK PREPARED 'tx-42'")
    finding = one(run, "db.locks.blocking")
    assert (finding.evidence["head_pid"], finding.evidence["blocked_pid"]) == (0, pid)
    assert [p["gid"] for p in finding.evidence["head_prepared"]] == ["tx-42"]
    steps = filled(finding)
    assert "ROLLBACK PREPARED 'tx-42';" in steps and "pg_terminate_backend(0)" not in steps


def make_deadlock(server: PostgresServer, sessions: Sessions, dbname: str = "postgres") -> None:
    """Two sessions update two rows in opposite orders; the detector aborts one. Returns
    once both sessions have ended (backends flush their statistics when they exit)."""
    server.psql("DROP TABLE IF EXISTS pair; CREATE TABLE pair (id int PRIMARY KEY, v int); "
                "INSERT INTO pair VALUES (1, 0), (2, 0)", dbname)
    a = sessions.open(server.dsn(dbname=dbname), autocommit=False)
    b = sessions.open(server.dsn(dbname=dbname), autocommit=False)
    a.execute("UPDATE pair SET v = 1 WHERE id = 1")
    b.execute("UPDATE pair SET v = 2 WHERE id = 2")
    errors: list[Exception] = []

    def update(conn: Any, sql: str) -> None:
        try:
            conn.execute(sql)
        except psycopg.Error as err:
            errors.append(err)

    crossing = [threading.Thread(target=update, args=(a, "UPDATE pair SET v = 1 WHERE id = 2")),
                threading.Thread(target=update, args=(b, "UPDATE pair SET v = 2 WHERE id = 1"))]
    for thread in crossing:
        thread.start()
    crossing[0].join(10)  # whichever the detector aborts, the other then proceeds
    crossing[1].join(10)
    assert [type(e) for e in errors] == [psycopg.errors.DeadlockDetected]
    a.close()
    b.close()


def test_deadlock_during_the_run_is_counted(pg_busy: PostgresServer, sessions: Sessions) -> None:
    """A real deadlock between the run's two samples gives a db.deadlocks warning."""
    result: dict[str, Run] = {}
    runner = threading.Thread(target=lambda: result.update(
        run=doctor(pg_busy.dsn(), deadlock_sample_ms=4000, timeout=9)))
    runner.start()
    # The first sample is the collector's first statement: once its session shows a
    # finished statement, anything that happens now falls inside the interval.
    wait_for(lambda: activity(pg_busy, "application_name = 'stackmedic' AND state = 'idle' "
                              "AND query <> ''"), "the first deadlock sample")
    make_deadlock(pg_busy, sessions)
    runner.join(30)
    finding = one(result["run"], "db.deadlocks")
    assert finding.severity is Severity.WARNING
    assert finding.evidence["new"] >= 1
    filled(finding)


def test_deadlocks_between_runs_are_counted_with_history(
        pg_busy: PostgresServer, sessions: Sessions, tmp_path: Path) -> None:
    """A deadlock between two runs is missed by the second run alone but reported with
    the first run's counters; a statistics reset starts the count afresh."""
    history = tmp_path / "history.json"
    first = one(doctor(pg_busy.dsn(), history=History(history)), "db.deadlocks")
    assert "previous_run" not in first.evidence
    make_deadlock(pg_busy, sessions)
    wait_for(lambda: pg_busy.psql("SELECT 1 FROM pg_stat_database "
                                  f"WHERE deadlocks > {first.evidence['after']}"),
             "the deadlock in the statistics")
    alone = one(doctor(pg_busy.dsn()), "db.deadlocks")
    assert (alone.severity, alone.evidence["new"]) == (Severity.OK, 0)
    second = one(doctor(pg_busy.dsn(), history=History(history)), "db.deadlocks")
    assert second.severity is Severity.WARNING and second.evidence["new"] == 1
    assert "1 deadlock(s) since the last run" in second.summary
    assert second.evidence["previous_run"] and second.evidence["since_last_run_s"] >= 0
    third = one(doctor(pg_busy.dsn(), history=History(history)), "db.deadlocks")
    assert (third.severity, third.evidence["new"]) == (Severity.OK, 0)
    pg_busy.psql("SELECT pg_stat_reset()")  # the statistics of this database restart
    reset = one(doctor(pg_busy.dsn(), history=History(history)), "db.deadlocks")
    assert (reset.severity, reset.evidence["new"]) == (Severity.OK, 0)


def test_a_dropped_database_hides_no_deadlock_since_the_last_run(
        pg_busy: PostgresServer, sessions: Sessions, tmp_path: Path) -> None:
    """A database with deadlocks dropped between runs takes its count out of the sum:
    the deadlock in another database since the last run is still reported."""
    pg_busy.psql("DROP DATABASE IF EXISTS doomed")
    pg_busy.psql("CREATE DATABASE doomed")
    make_deadlock(pg_busy, sessions, "doomed")
    wait_for(lambda: pg_busy.psql("SELECT 1 FROM pg_stat_database "
                                  "WHERE datname = 'doomed' AND deadlocks = 1"),
             "the deadlock in the statistics")
    history = History(tmp_path / "history.json")
    first = one(doctor(pg_busy.dsn(), history=history), "db.deadlocks")
    pg_busy.psql("DROP DATABASE doomed")
    make_deadlock(pg_busy, sessions)
    wait_for(lambda: pg_busy.psql("SELECT 1 FROM pg_stat_database HAVING "
                                  f"sum(deadlocks) = {first.evidence['after']}"),
             "the deadlock in the statistics")
    second = one(doctor(pg_busy.dsn(), history=History(tmp_path / "history.json")),
                 "db.deadlocks")
    assert second.severity is Severity.WARNING and second.evidence["new"] == 1
    assert "1 deadlock(s) since the last run" in second.summary


def test_long_running_query_is_named(pg_busy: PostgresServer, sessions: Sessions) -> None:
    """A pg_sleep running past the threshold is reported with its pid and statement."""
    conn = sessions.open(pg_busy.dsn(), app="reporting")
    pid = conn.info.backend_pid
    sessions.background(conn, "SELECT pg_sleep(60) /* nightly report */")
    wait_for(lambda: activity(pg_busy, f"pid = {pid} AND state = 'active' AND query_start < "
                              "now() - '0.3s'::interval"), "a long statement")
    run = doctor(pg_busy.dsn(), {"db.query.long_running": {"warning": 0.2}})
    finding = one(run, "db.query.long_running")
    assert finding.severity is Severity.WARNING
    assert finding.evidence["pid"] == pid
    assert "nightly report" in finding.evidence["query"]
    assert f"pg_cancel_backend({pid})" in filled(finding)


def test_monitor_role_sees_sessions_plain_role_gets_grant(
        pg_busy: PostgresServer, sessions: Sessions) -> None:
    """A pg_monitor role judges other sessions; a plain role gets unknown naming the GRANT."""
    pg_busy.psql("DROP ROLE IF EXISTS mon; CREATE ROLE mon LOGIN IN ROLE pg_monitor; "
                 "DROP ROLE IF EXISTS plain; CREATE ROLE plain LOGIN")
    conn = sessions.open(pg_busy.dsn(), app="forgetful", autocommit=False)
    conn.execute("SELECT 1")
    thresholds = {"db.connections.idle_in_transaction": {"warning": 0.0}}
    monitored = doctor(pg_busy.dsn(user="mon"), thresholds)
    assert not [f for f in monitored.findings if f.severity is Severity.UNKNOWN]
    assert one(monitored, "db.connections.idle_in_transaction").evidence["pid"] == \
        conn.info.backend_pid
    plain = doctor(pg_busy.dsn(user="plain"), thresholds)
    finding = one(plain, "db.connections.idle_in_transaction")
    assert finding.severity is Severity.UNKNOWN
    assert finding.evidence["grant"] == "GRANT pg_monitor TO plain;"
    assert finding.remedy is not None  # the way to run the check, not the symptom's fix
    assert finding.remedy.steps == ("Let role plain read the statistics (as a superuser): "
                                    "`GRANT pg_monitor TO plain;`",)
    assert {f.symptom for f in problems(plain.findings)} >= {"db.locks.blocking"}


def test_garbled_dsn_is_unknown_not_a_crash() -> None:
    """A dsn libpq cannot parse or use gives an unknown db.down naming the problem."""
    for dsn in ("not a dsn", "postgresql://app:s3cret-pw@127.0.0.1:notaport/app"):
        run = doctor(dsn)
        assert not with_symptom(run.findings, "stackmedic.check.failed"), run.findings
        finding = one(run, "db.down")
        assert finding.severity is Severity.UNKNOWN
        assert finding.evidence["kind"] == "config"
        assert finding.remedy is not None and "dsn" in finding.remedy.steps[0]
        assert "s3cret-pw" not in json.dumps([f.to_dict() for f in run.findings])
