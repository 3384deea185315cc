"""Statistics faults induced for real: slow statements, indexes, vacuum, xid, cache,
replication, declared uniqueness, and a healthy busy server that must stay clean."""

from __future__ import annotations

import time
from typing import Any

from stackmedic.findings import Severity
from stackmedic.testing import problems, with_symptom
from tests.fixtures.postgres import PostgresServer
from tests.postgres.conftest import Replica, Sessions, doctor, new_database, pgbench, wait_for
from tests.postgres.test_sessions import one

BIG = ("CREATE TABLE big AS SELECT g AS id, g % 1000 AS v, md5(g::text) AS pad "
       "FROM generate_series(1, 200000) g; ANALYZE big")


def test_slow_statement_is_ranked(pg_stats: PostgresServer, sessions: Sessions) -> None:
    """A statement slower than the threshold is reported from pg_stat_statements."""
    dsn = new_database(pg_stats, "slow", "CREATE EXTENSION pg_stat_statements")
    sessions.open(dsn).execute("SELECT pg_sleep(0.3) AS slow_marker")
    run = doctor(dsn, {"db.query.slow": {"warning": 200}})
    found = [f for f in with_symptom(run.findings, "db.query.slow")
             if "slow_marker" in f.evidence.get("query", "")]
    assert found and found[0].severity is Severity.WARNING
    assert found[0].evidence["calls"] == 1
    assert found[0].remedy is not None


def test_without_pg_stat_statements_says_how_to_enable(pg_shared: PostgresServer) -> None:
    """Without pg_stat_statements the slow-query check is info, with the enabling SQL."""
    finding = one(doctor(pg_shared.dsn()), "db.query.slow")
    assert finding.severity is Severity.INFO
    assert "shared_preload_libraries" in finding.evidence["enable"]


def test_seq_scanned_table_suggests_index_and_cache_misses(
        pg_stats: PostgresServer, sessions: Sessions) -> None:
    """A 200k-row table filtered by sequential scans gets db.index.missing on column v,
    and reading it from outside shared_buffers lowers the cache hit ratio."""
    dsn = new_database(pg_stats, "scans", f"CREATE EXTENSION pg_stat_statements; {BIG}")
    conn = sessions.open(dsn)
    for value in range(6):
        conn.execute("SELECT count(*) FROM big WHERE v = %s", [value])
    conn.close()  # the backend flushes its statistics as it exits
    run = doctor(dsn, {"db.cache.hit_ratio_low": {"warning": 0.95}})
    finding = one(run, "db.index.missing")
    assert finding.severity is Severity.WARNING
    assert finding.evidence["table"] == "public.big"
    assert finding.evidence["candidate_columns"] == ["v"]
    assert finding.remedy is not None
    assert "CREATE INDEX CONCURRENTLY ON public.big (v);" in "\n".join(finding.remedy.steps)
    cache = one(run, "db.cache.hit_ratio_low")
    assert cache.severity in (Severity.WARNING, Severity.CRITICAL)
    assert cache.evidence["blks_read"] > 0


def test_unused_and_duplicate_indexes(pg_stats: PostgresServer) -> None:
    """A never-scanned index is unused (the primary key is not), two identical are duplicate."""
    dsn = new_database(pg_stats, "idx", """
        CREATE TABLE t (id int PRIMARY KEY, v int, w int);
        INSERT INTO t SELECT g, g % 97, g FROM generate_series(1, 100000) g;
        CREATE INDEX t_w ON t (w); CREATE INDEX t_v ON t (v); CREATE INDEX t_v_again ON t (v);
        ANALYZE t""")
    run = doctor(dsn)
    unused = {f.evidence["index"] for f in with_symptom(run.findings, "db.index.unused")
              if f.severity is Severity.WARNING}
    assert "public.t_w" in unused and "public.t_pkey" not in unused
    duplicate = one(run, "db.index.duplicate")
    assert duplicate.severity is Severity.WARNING
    assert duplicate.evidence["indexes"] == ["t_v", "t_v_again"]
    assert duplicate.remedy is not None
    assert "DROP INDEX CONCURRENTLY t_v_again;" in "\n".join(duplicate.remedy.steps)


def test_dead_tuples_with_autovacuum_disabled(pg_stats: PostgresServer) -> None:
    """Deleting 60% of a table whose autovacuum is off gives a critical dead-tuple finding."""
    dsn = new_database(pg_stats, "dead", """
        CREATE TABLE churn (id int, pad text) WITH (autovacuum_enabled = false);
        INSERT INTO churn SELECT g, 'x' FROM generate_series(1, 50000) g""")
    pg_stats.psql("DELETE FROM churn WHERE id <= 30000", dbname="dead")
    finding = one(doctor(dsn), "db.vacuum.dead_tuples")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["table"] == "public.churn"
    assert finding.evidence["autovacuum_disabled"] is True
    assert finding.remedy is not None
    assert "VACUUM (ANALYZE, VERBOSE) public.churn;" in "\n".join(finding.remedy.steps)


def test_xid_age_against_lowered_threshold(pg_shared: PostgresServer) -> None:
    """Transaction id age is judged against the hard limit (proven with a lowered level)."""
    run = doctor(pg_shared.dsn(), {"db.xid.wraparound": {"warning": 1e-12}})
    finding = with_symptom(run.findings, "db.xid.wraparound")[0]
    assert finding.severity is Severity.WARNING
    assert 0 < finding.evidence["age"] < finding.evidence["hard_limit"]
    default = with_symptom(doctor(pg_shared.dsn()).findings, "db.xid.wraparound")
    assert [f.severity for f in default] == [Severity.OK]  # default levels: this server is fine


def test_duplicate_values_in_declared_unique_column(pg_shared: PostgresServer) -> None:
    """Duplicate portal ids are counted with samples; a clean column is ok."""
    dsn = new_database(pg_shared, "portal", """
        CREATE TABLE customers (id serial, portal_id int, email text);
        INSERT INTO customers (portal_id, email) SELECT g, 'u' || g FROM generate_series(1, 100) g;
        INSERT INTO customers (portal_id, email) VALUES (7, 'a'), (7, 'b'), (7, 'c'), (9, 'd'),
                                                       (NULL, 'e'), (NULL, 'f')""")
    run = doctor(dsn, unique=[{"table": "customers", "columns": ["portal_id"]},
                              {"table": "public.customers", "columns": ["id"]}])
    found = {f.evidence["table"]: f for f in with_symptom(run.findings,
                                                          "db.constraint.duplicates")}
    dup = found["customers"]
    assert dup.severity is Severity.WARNING
    assert (dup.evidence["values"], dup.evidence["extra_rows"]) == (2, 4)
    assert dup.evidence["samples"][0] == {"portal_id": 7, "n": 4}
    assert dup.remedy is not None and "HAVING count(*) > 1" in "\n".join(dup.remedy.steps)
    assert found["public.customers"].severity is Severity.OK


def test_monitor_role_needs_select_for_declared_unique(pg_shared: PostgresServer) -> None:
    """A pg_monitor-only role runs every check; the uniqueness one names the GRANT it needs."""
    new_database(pg_shared, "monitored", "CREATE TABLE orders (ref text)")
    pg_shared.psql("DROP ROLE IF EXISTS watcher; CREATE ROLE watcher LOGIN IN ROLE pg_monitor")
    run = doctor(pg_shared.dsn(user="watcher", dbname="monitored"),
                 unique=[{"table": "orders", "columns": ["ref"]}])
    unknown = [f for f in run.findings if f.severity is Severity.UNKNOWN]
    assert [f.symptom for f in unknown] == ["db.constraint.duplicates"]
    assert unknown[0].evidence["grant"] == "GRANT SELECT ON orders TO watcher;"


def test_paused_replica_and_inactive_slot_lag(pg_factory: Any, replica_of: Any) -> None:
    """With replay paused on a streaming replica and an unused slot, both lag in bytes."""
    primary = pg_factory()
    replica: Replica = replica_of(primary)
    wait_for(lambda: "streaming" in primary.psql("SELECT state FROM pg_stat_replication"),
             "the replica to stream")
    primary.psql("SELECT pg_create_physical_replication_slot('forgotten', true)")
    replica.psql("SELECT pg_wal_replay_pause()")
    primary.psql("CREATE TABLE filler AS SELECT g, md5(g::text) FROM generate_series(1, 100000) g")
    lowered = {"db.replication.lag": {"warning": 1024 * 1024}}
    run = doctor(primary.dsn(), lowered)
    lags = {(f.evidence["kind"], f.evidence["name"]): f
            for f in with_symptom(run.findings, "db.replication.lag")
            if f.severity is Severity.WARNING}
    assert ("slot", "forgotten") in lags and lags[("slot", "forgotten")].evidence["active"] is False
    replicas = [f for key, f in lags.items() if key[0] == "replica"]
    assert replicas and replicas[0].evidence["lag_bytes"] > 1024 * 1024
    remedy = lags[("slot", "forgotten")].remedy
    assert remedy is not None and "pg_drop_replication_slot('forgotten')" in "\n".join(remedy.steps)
    wait_for(lambda: int(replica.psql("SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), "
                                      "pg_last_wal_replay_lsn())")) > 1024 * 1024,
             "the replica to receive what it does not replay")
    standby = one(doctor(replica.dsn(), lowered), "db.replication.lag")
    assert standby.severity is Severity.WARNING
    assert standby.evidence["kind"] == "standby" and standby.evidence["paused"] is True


def test_healthy_busy_server_is_clean(pg_factory: Any) -> None:
    """A server under pgbench load yields no warning, critical or unknown finding."""
    server = pg_factory(settings={"shared_buffers": "128MB"})
    init = pgbench(server, "-i", "-s", "1", "-q")
    assert init.wait(120) == 0, init.stdout.read() if init.stdout else ""
    server.psql("SELECT pg_stat_reset()")
    load = pgbench(server, "-c", "4", "-j", "2", "-T", "8")
    try:
        wait_for(lambda: int(server.psql("SELECT count(*) FROM pg_stat_activity "
                                         "WHERE application_name = 'pgbench'")) == 4,
                 "pgbench clients")
        time.sleep(1.0)  # let the load reach its steady state before looking
        run = doctor(server.dsn())
    finally:
        load.terminate()
        load.wait(30)
    assert [(f.symptom, f.summary) for f in problems(run.findings)] == []
    assert len({f.symptom for f in run.findings}) >= 16
