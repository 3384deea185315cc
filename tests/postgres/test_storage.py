"""Statistics faults induced for real: slow statements, indexes, vacuum, xid, cache,
replication, declared uniqueness, and a healthy busy server that must stay clean."""

from __future__ import annotations

import json
import time
from typing import Any

from stackmedic.findings import Severity
from stackmedic.testing import problems, with_symptom
from tests.fixtures.postgres import PostgresServer
from tests.postgres.conftest import Replica, Sessions, doctor, new_database, pgbench, wait_for
from tests.postgres.test_sessions import filled, one

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
    assert found[0].evidence["queryid"] in filled(found[0])


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
    assert "CREATE INDEX CONCURRENTLY ON public.big (v);" in filled(finding)
    cache = one(run, "db.cache.hit_ratio_low")
    assert cache.severity in (Severity.WARNING, Severity.CRITICAL)
    assert cache.evidence["blks_read"] > 0
    filled(cache)


def test_unused_and_duplicate_indexes(pg_stats: PostgresServer) -> None:
    """A never-scanned index is unused (the primary key is not), two identical are duplicate;
    the copy to keep is the one backing a constraint, whichever was created first."""
    dsn = new_database(pg_stats, "idx", """
        CREATE TABLE t (id int PRIMARY KEY, v int, w int);
        INSERT INTO t SELECT g, g % 97, g FROM generate_series(1, 100000) g;
        CREATE INDEX t_w ON t (w); CREATE INDEX t_v ON t (v); CREATE INDEX t_v_again ON t (v);
        ANALYZE t;
        CREATE TABLE k (id int, v int); CREATE INDEX k_id ON k (id);
        ALTER TABLE k ADD PRIMARY KEY (id);
        CREATE TABLE kk (id int PRIMARY KEY);  -- in CREATE TABLE the copy would be dropped
        ALTER TABLE kk ADD CONSTRAINT kk_id_key UNIQUE (id)""")
    run = doctor(dsn)
    unused = {f.evidence["index"] for f in with_symptom(run.findings, "db.index.unused")
              if f.severity is Severity.WARNING}
    assert "public.t_w" in unused and "public.t_pkey" not in unused
    filled(next(f for f in with_symptom(run.findings, "db.index.unused")
            if f.evidence["index"] == "public.t_w"))
    duplicates = {f.evidence["table"]: f for f in with_symptom(run.findings,
                                                               "db.index.duplicate")}
    assert {t: f.severity for t, f in duplicates.items()} == {
        "t": Severity.WARNING, "k": Severity.WARNING, "kk": Severity.WARNING}
    assert duplicates["t"].evidence["indexes"] == ["t_v", "t_v_again"]
    assert "DROP INDEX CONCURRENTLY t_v_again;" in filled(duplicates["t"])
    assert duplicates["k"].evidence["keep"] == "k_pkey"
    assert "DROP INDEX CONCURRENTLY k_id;" in filled(duplicates["k"])
    assert "k_pkey;" not in duplicates["k"].evidence["drop_index"]
    assert duplicates["kk"].evidence["keep"] == "kk_pkey"
    assert "ALTER TABLE kk DROP CONSTRAINT kk_id_key;" in filled(duplicates["kk"])


def test_dead_tuples_with_autovacuum_disabled(pg_stats: PostgresServer) -> None:
    """Deleting 60% of a table whose autovacuum is off gives a critical dead-tuple finding
    (`off` is stored as written, not as `false`)."""
    dsn = new_database(pg_stats, "dead", """
        CREATE TABLE churn (id int, pad text) WITH (autovacuum_enabled = off);
        INSERT INTO churn SELECT g, 'x' FROM generate_series(1, 50000) g""")
    pg_stats.psql("DELETE FROM churn WHERE id <= 30000", dbname="dead")
    finding = one(doctor(dsn), "db.vacuum.dead_tuples")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["table"] == "public.churn"
    assert finding.evidence["autovacuum_disabled"] is True
    assert "VACUUM (ANALYZE, VERBOSE) public.churn;" in filled(finding)


def test_xid_age_against_lowered_threshold(pg_shared: PostgresServer) -> None:
    """Transaction id age is judged against the hard limit (proven with a lowered level)."""
    run = doctor(pg_shared.dsn(), {"db.xid.wraparound": {"warning": 1e-12}})
    finding = with_symptom(run.findings, "db.xid.wraparound")[0]
    assert finding.severity is Severity.WARNING
    assert 0 < finding.evidence["age"] < finding.evidence["hard_limit"]
    filled(finding)
    default = with_symptom(doctor(pg_shared.dsn()).findings, "db.xid.wraparound")
    assert [f.severity for f in default] == [Severity.OK]  # default levels: this server is fine


def test_duplicate_values_in_declared_unique_column(pg_shared: PostgresServer) -> None:
    """Duplicate portal ids are counted with samples; a clean column is ok; a uuid sample is
    plain JSON; an entry that cannot be checked is unknown on its own, the others still run."""
    dsn = new_database(pg_shared, "portal", """
        CREATE TABLE customers (id serial, portal_id int, email text, ref uuid, doc json);
        INSERT INTO customers (portal_id, email) SELECT g, 'u' || g FROM generate_series(1, 100) g;
        INSERT INTO customers (portal_id, email) VALUES (7, 'a'), (7, 'b'), (7, 'c'), (9, 'd'),
                                                       (NULL, 'e'), (NULL, 'f');
        UPDATE customers SET ref = '00000000-0000-0000-0000-00000000000a' WHERE id <= 2""")
    run = doctor(dsn, unique=[{"table": "customers", "columns": ["portal_id"]},
                              {"table": "public.customers", "columns": ["id"]},
                              {"table": "customers", "columns": ["doc"]},  # json: no "="
                              {"table": "nosuch.customers", "columns": ["id"]},
                              {"table": "customers", "columns": ["ref"]}])
    found = {(f.evidence["table"], f.evidence["columns"]): f
             for f in with_symptom(run.findings, "db.constraint.duplicates")}
    dup = found[("customers", "portal_id")]
    assert dup.severity is Severity.WARNING
    assert (dup.evidence["values"], dup.evidence["extra_rows"]) == (2, 4)
    assert dup.evidence["samples"][0] == {"portal_id": 7, "n": 4}
    assert "HAVING count(*) > 1" in filled(dup)
    assert "CREATE UNIQUE INDEX CONCURRENTLY ON customers (portal_id);" in filled(dup)
    assert found[("public.customers", "id")].severity is Severity.OK
    assert found[("customers", "ref")].evidence["samples"] == [
        {"ref": "00000000-0000-0000-0000-00000000000a", "n": 2}]
    for key in (("customers", "doc"), ("nosuch.customers", "id")):
        assert found[key].severity is Severity.UNKNOWN, found[key].summary
        assert found[key].remedy is not None and "unique:" in found[key].remedy.steps[0]
    json.dumps(run.facts)  # facts are plain JSON, as --record stores them


def test_locked_declared_table_costs_one_check_not_the_run(
        pg_shared: PostgresServer, sessions: Sessions) -> None:
    """With server timeouts longer than the run's budget, a uniqueness check stuck behind an
    ACCESS EXCLUSIVE lock is cut before the deadline: that check is unknown (saying the
    table was locked), and the rest of the snapshot is still judged."""
    dsn = new_database(pg_shared, "locked", "CREATE TABLE ledger (ref int)")
    holder = sessions.open(dsn, autocommit=False)
    holder.execute("LOCK TABLE ledger IN ACCESS EXCLUSIVE MODE")
    run = doctor(dsn, timeout=3, statement_timeout_ms=60_000, lock_timeout_ms=60_000,
                 unique=[{"table": "ledger", "columns": ["ref"]}])
    holder.rollback()
    assert not with_symptom(run.findings, "stackmedic.check.failed"), run.findings
    dup = one(run, "db.constraint.duplicates")
    assert dup.severity is Severity.UNKNOWN
    assert dup.remedy is not None and "locked by another session" in dup.remedy.steps[0]
    assert [f.severity for f in with_symptom(run.findings, "db.down")] == [Severity.OK]
    assert [f.severity for f in with_symptom(run.findings, "db.index.duplicate")] == \
        [Severity.OK]


def test_monitor_role_needs_select_for_declared_unique(pg_shared: PostgresServer) -> None:
    """A pg_monitor-only role runs every check; the uniqueness one names the GRANT it needs."""
    new_database(pg_shared, "monitored", "CREATE TABLE orders (ref text)")
    pg_shared.psql("DROP ROLE IF EXISTS watcher; CREATE ROLE watcher LOGIN IN ROLE pg_monitor")
    run = doctor(pg_shared.dsn(user="watcher", dbname="monitored"),
                 unique=[{"table": "orders", "columns": ["ref"]}])
    unknown = [f for f in run.findings if f.severity is Severity.UNKNOWN]
    assert [f.symptom for f in unknown] == ["db.constraint.duplicates"]
    assert unknown[0].evidence["grant"] == "GRANT SELECT ON orders TO watcher;"
    assert unknown[0].remedy is not None
    assert "GRANT SELECT ON orders TO watcher;" in unknown[0].remedy.steps[0]


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
    assert "pg_drop_replication_slot('forgotten')" in filled(lags[("slot", "forgotten")])
    assert "pg_wal_replay_resume()" in filled(replicas[0])
    wait_for(lambda: int(replica.psql("SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), "
                                      "pg_last_wal_replay_lsn())")) > 1024 * 1024,
             "the replica to receive what it does not replay")
    standby = one(doctor(replica.dsn(), lowered), "db.replication.lag")
    assert standby.severity is Severity.WARNING
    assert standby.evidence["kind"] == "standby" and standby.evidence["paused"] is True
    steps = filled(standby)
    assert "pg_wal_replay_resume()" in steps and "pg_drop_replication_slot('" not in steps


def test_standby_without_hot_standby_is_down_not_accepting(
        pg_factory: Any, replica_of: Any) -> None:
    """A standby running with hot_standby = off refuses sessions: db.down, not accepting."""
    primary = pg_factory()
    replica: Replica = replica_of(primary)
    replica.stop()
    replica.settings["hot_standby"] = "off"
    replica.start()
    finding = one(doctor(replica.dsn()), "db.down")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["kind"] == "not_accepting"
    assert "hot_standby" in (finding.cause or "")


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
