"""The postgres kind's contract: session safety, configuration, and rules judged from
recorded facts (no server needed once the facts exist)."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from stackmedic.checks import CollectContext, default_thresholds, get_probe
from stackmedic.config import parse_stack
from stackmedic.doctor import evaluate
from stackmedic.findings import Finding, Severity
from stackmedic.probes.postgres import PostgresComponent
from stackmedic.probes.postgres.collect import _connect, classify_error
from stackmedic.probes.postgres.queries import scrub_sql
from stackmedic.runbooks import attach_remedy
from stackmedic.testing import run_components, with_symptom
from stackmedic.thresholds import Thresholds
from tests.fixtures.postgres import PostgresServer
from tests.postgres.conftest import doctor, new_database, psycopg


def recorded(server: PostgresServer) -> tuple[PostgresComponent, dict[str, Any]]:
    """A component and the facts one real run recorded for it."""
    run = doctor(server.dsn())
    component = run.components["db"]
    assert isinstance(component, PostgresComponent)
    return component, run.facts["db"]["snapshot"]


def judge(component: PostgresComponent, facts: dict[str, Any]) -> list[Finding]:
    """Apply every postgres rule to recorded facts and fill remedies, as the doctor would."""
    return [attach_remedy(f) for f in evaluate("db", component, "snapshot", facts,
                                               Thresholds(default_thresholds()))]


def test_session_is_read_only_with_timeouts(pg_shared: PostgresServer) -> None:
    """The diagnostic session is named stackmedic, read-only, with statement and lock timeouts."""
    component = PostgresComponent(kind="postgres", dsn=pg_shared.dsn())
    ctx = CollectContext(component="db", deadline=time.monotonic() + 5)
    with _connect(component, ctx) as conn:
        shown = {}
        for name in ("application_name", "default_transaction_read_only",
                     "statement_timeout", "lock_timeout"):
            row = conn.execute(f"SHOW {name}").fetchone()
            assert row is not None
            shown[name] = row[name]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE must_not_exist (x int)")
    assert shown == {"application_name": "stackmedic", "default_transaction_read_only": "on",
                     "statement_timeout": "2s", "lock_timeout": "1s"}


def test_timestamps_are_utc_whatever_the_session_zone(pg_shared: PostgresServer) -> None:
    """A dsn asking for another TimeZone still yields facts and evidence in UTC with Z."""
    dsn = new_database(pg_shared, "zoned")
    pg_shared.psql("SELECT pg_stat_reset()", dbname="zoned")  # sets stats_reset
    run = doctor(dsn + "?options=-c%20TimeZone%3DAsia/Tokyo")
    deadlocks = with_symptom(run.findings, "db.deadlocks")
    assert [f.severity for f in deadlocks] == [Severity.OK]
    stamp = deadlocks[0].evidence["stats_reset"]
    assert isinstance(stamp, str) and stamp.endswith("Z"), stamp


def test_pg_environment_variables_replace_a_missing_dsn(
        pg_shared: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a dsn the component connects where PGHOST/PGPORT/PGUSER point."""
    for name, value in {"PGHOST": "127.0.0.1", "PGPORT": str(pg_shared.port),
                        "PGUSER": "postgres", "PGDATABASE": "postgres"}.items():
        monkeypatch.setenv(name, value)
    run = run_components({"db": {"kind": "postgres"}})
    down = with_symptom(run.findings, "db.down")
    assert [f.severity for f in down] == [Severity.OK]
    assert down[0].evidence["port"] == pg_shared.port


def test_interpolated_password_connects_and_never_shows(pg_factory: Any) -> None:
    """A `${DB_PASSWORD}` in the dsn authenticates and appears in no finding or fact."""
    server = pg_factory(password="tr0ub4dor-and-3")
    run = run_components({"db": {"kind": "postgres", "dsn": server.dsn(
        password="${DB_PASSWORD}")}}, environ={"DB_PASSWORD": "tr0ub4dor-and-3"})
    assert [f.severity for f in with_symptom(run.findings, "db.auth.failed")] == [Severity.OK]
    dumped = json.dumps([f.to_dict() for f in run.findings]) + json.dumps(run.facts, default=str)
    assert "tr0ub4dor-and-3" not in dumped


def test_stack_file_entry_and_registration() -> None:
    """A stack-file entry validates with its options; the kind offers port 5432."""
    stack = parse_stack("components:\n  db: {kind: postgres, dsn: 'postgresql://a@h/d', "
                        "unique: [{table: customers, columns: [portal_id]}], "
                        "statement_timeout_ms: 500}\n")
    db = stack.components["db"]
    assert isinstance(db, PostgresComponent)
    assert (db.unique[0].columns, db.statement_timeout_ms, db.lock_timeout_ms) == \
        (["portal_id"], 500, 1000)
    probe = get_probe("postgres")
    assert probe.default_ports == (5432,)
    assert {s for r in probe.rules for s in r.symptoms} == {
        "db.down", "db.auth.failed", "db.connections.exhausted",
        "db.connections.idle_in_transaction", "db.connections.idle_leak",
        "db.locks.blocking", "db.deadlocks", "db.query.long_running", "db.query.slow",
        "db.index.missing", "db.index.unused", "db.index.duplicate", "db.vacuum.dead_tuples",
        "db.xid.wraparound", "db.cache.hit_ratio_low", "db.replication.lag",
        "db.constraint.duplicates", "db.transaction.long_open"}


@pytest.mark.parametrize(("message", "kind"), [
    ('FATAL:  password authentication failed for user "app"', "auth"),
    ("FATAL:  sorry, too many clients already", "too_many"),
    ("FATAL:  the database system is starting up", "starting"),
    ("FATAL:  the database system is shutting down", "shutting_down"),
    ("connection to server at \"10.0.0.5\", port 5432 failed: timeout expired", "timeout"),
    ("connection to server at \"127.0.0.1\", port 1 failed: Connection refused", "refused"),
])
def test_connection_messages_are_classified(message: str, kind: str) -> None:
    """libpq's failure messages map to the kind of failure the rules phrase."""
    assert classify_error(message) == kind


def test_deadlock_cycle_in_recorded_facts_is_judged(pg_shared: PostgresServer) -> None:
    """Two sessions blocking each other (a deadlock not yet broken) resolve without looping."""
    component, facts = recorded(pg_shared)
    facts = copy.deepcopy(facts)
    base = {"datname": "app", "usename": "app", "client_addr": None, "state": "active",
            "wait_event_type": "Lock", "wait_event": "transactionid", "xact_age_s": 9.0,
            "query_age_s": 9.0, "state_age_s": 9.0}
    facts["activity"]["sessions"] += [{**base, "pid": 101, "application_name": "a",
                                       "query": "UPDATE t", "blocked_by": [102]},
                                      {**base, "pid": 102, "application_name": None,
                                       "query": None, "blocked_by": [101]}]
    findings = judge(component, facts)
    locks = with_symptom(findings, "db.locks.blocking")
    assert [f.severity for f in locks] == [Severity.WARNING]
    assert locks[0].evidence["blocked_count"] == 2
    assert not with_symptom(findings, "stackmedic.check.failed")


def test_garbage_facts_become_findings_not_tracebacks(pg_shared: PostgresServer) -> None:
    """Sections the server refused to give come back as unknown findings naming the GRANT."""
    component, facts = recorded(pg_shared)
    facts = copy.deepcopy(facts)
    facts["errors"]["tables"] = {"sqlstate": "42501", "message": "permission denied"}
    facts["tables"] = None
    findings = judge(component, facts)
    missing = with_symptom(findings, "db.index.missing")
    assert [f.severity for f in missing] == [Severity.UNKNOWN]
    assert missing[0].evidence["grant"] == "GRANT pg_monitor TO postgres;"
    assert missing[0].remedy is not None  # how to make the check run, no <placeholders>
    assert missing[0].remedy.steps == ("Let role postgres read the statistics (as a "
                                       "superuser): `GRANT pg_monitor TO postgres;`",)
    assert not with_symptom(findings, "stackmedic.check.failed")


def test_every_db_runbook_has_the_four_sections_and_fix_steps() -> None:
    """Each db.* runbook of this kind has a title, the four sections, and Fix list items."""
    from stackmedic.runbooks import SECTIONS, fix_steps, load_runbook, sections

    for symptom in {s for r in get_probe("postgres").rules for s in r.symptoms}:
        text = load_runbook(symptom)
        assert text.startswith("# "), symptom
        assert tuple(sections(text)) == SECTIONS, symptom
        assert fix_steps(text), symptom


def test_idle_leak_over_the_unix_socket_targets_null_client_addr(
        pg_shared: PostgresServer) -> None:
    """Sessions without a client address (unix socket) are matched with IS NULL in the
    remedy, and an application name with a quote is quoted as SQL."""
    component, facts = recorded(pg_shared)
    facts = copy.deepcopy(facts)
    base = {"datname": "app", "usename": "cron", "client_addr": None, "state": "idle",
            "wait_event_type": None, "wait_event": None, "xact_age_s": None,
            "query_age_s": 900.0, "state_age_s": 900.0, "application_name": "bob's job",
            "query": "SELECT 1", "blocked_by": None, "hidden": False}
    facts["activity"]["sessions"] += [{**base, "pid": 1000 + i} for i in range(12)]
    leak = with_symptom(judge(component, facts), "db.connections.idle_leak")
    assert [f.severity for f in leak] == [Severity.WARNING]
    assert leak[0].remedy is not None
    assert ("WHERE client_addr IS NULL AND application_name = 'bob''s job' AND usename = "
            "'cron'\n") in "\n".join(leak[0].remedy.steps)


@pytest.mark.parametrize(("text", "shown"), [
    ("ALTER ROLE app PASSWORD 'x''y z'", "ALTER ROLE app PASSWORD '***'"),
    ("CREATE ROLE a LOGIN ENCRYPTED PASSWORD 'sekrit' VALID UNTIL 'infinity'",
     "CREATE ROLE a LOGIN ENCRYPTED PASSWORD '***' VALID UNTIL 'infinity'"),
    ("alter user a password $pw$sekrit$pw$", "alter user a password '***'"),
    ("ALTER ROLE app PASSWORD 'cut by left(query, 30", "ALTER ROLE app PASSWORD '***'"),
    ("ALTER ROLE app PASSWORD NULL", "ALTER ROLE app PASSWORD NULL"),
])
def test_password_literals_are_scrubbed_from_statements(text: str, shown: str) -> None:
    """Statement texts shown as evidence never carry a password literal."""
    assert scrub_sql(text) == shown
