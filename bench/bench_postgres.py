"""Bench: every postgres check at once, against check_postgres on the same faults.

    .venv/bin/python bench/bench_postgres.py [--tables 2000] [--connections 200]
        [--runs 5] [--record]

Starts a throwaway primary (as the `postgres` OS user, never the shared server) with
N tables and M open connections, induces the faults of issue 3 (an idle transaction
holding a row lock with a waiter behind it, a long statement, dead tuples with
autovacuum off, a sequentially scanned 200k-row table, unused and duplicate indexes,
an inactive slot holding WAL, a streaming replica with replay paused, duplicate
values in a declared-unique column), then times one doctor run (median of --runs)
and Debian's `check_postgres` (package `check-postgres`) running its equivalent
actions one after another, as a Nagios host would. Prints the time ratio and which
symptoms each reported. Goal (issue 3): the doctor under 1 s.
--record appends the result to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures

from tests.fixtures.postgres import PostgresServer

SECOND = 1.0  # time thresholds for both tools, so aged faults count after a short wait
# check_postgres action → (its options, the stackmedic symptom it corresponds to).
ACTIONS: dict[str, tuple[list[str], str]] = {
    "backends": (["--warning=80%", "--critical=95%"], "db.connections.exhausted"),
    "locks": (["--warning=waiting=1"], "db.locks.blocking"),
    "txn_idle": (["--warning=1 second"], "db.connections.idle_in_transaction"),
    "txn_time": (["--warning=1 second"], "db.connections.idle_in_transaction"),
    "query_time": (["--warning=1 second"], "db.query.long_running"),
    "hitratio": (["--warning=90%", "--critical=80%"], "db.cache.hit_ratio_low"),
    "txn_wraparound": ([], "db.xid.wraparound"),
    "bloat": (["--warning=1 M"], "db.vacuum.dead_tuples"),
    "last_autovacuum": (["--warning=1 day"], "db.vacuum.dead_tuples"),
    "replication_slots": (["--warning=1 MB"], "db.replication.lag"),
    "hot_standby_delay": (["--warning=1048576", "--critical=1073741824"],
                          "db.replication.lag"),
}
THRESHOLDS = {"db.connections.idle_in_transaction": {"warning": SECOND},
              "db.locks.blocking": {"warning": SECOND},
              "db.query.long_running": {"warning": SECOND},
              "db.replication.lag": {"warning": 1024 * 1024}}
SETUP = """
DO $$ BEGIN FOR i IN 1..{tables} LOOP
  EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v int)', i);
END LOOP; END $$;
CREATE EXTENSION pg_stat_statements;
CREATE TABLE big AS SELECT g AS id, g % 1000 AS v, g AS w FROM generate_series(1, 200000) g;
CREATE INDEX big_w ON big (w); CREATE INDEX big_id ON big (id); CREATE INDEX big_id2 ON big (id);
CREATE TABLE churn (id int, pad text) WITH (autovacuum_enabled = false);
INSERT INTO churn SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g;
DELETE FROM churn WHERE id <= 30000; ANALYZE churn; ANALYZE big;
CREATE TABLE accounts (id int PRIMARY KEY, v int); INSERT INTO accounts VALUES (1, 0);
CREATE TABLE customers (portal_id int); INSERT INTO customers VALUES (1), (2), (2), (3), (3);
SELECT pg_create_physical_replication_slot('forgotten', true);
"""


def replica_of(primary: PostgresServer) -> PostgresServer:
    """A streaming standby cloned with pg_basebackup (the same way the tests do)."""
    from tests.postgres.conftest import Replica

    return Replica(primary)


def induce(primary: PostgresServer, replica: PostgresServer, connections: int) -> list[Any]:
    import psycopg

    dsn = primary.dsn(dbname="bench")
    conns = [psycopg.connect(dsn, application_name="pool", autocommit=True)
             for _ in range(connections - 4)]
    holder = psycopg.connect(dsn, application_name="holder")
    holder.execute("UPDATE accounts SET v = 1 WHERE id = 1")
    waiter = psycopg.connect(dsn, application_name="waiter", autocommit=True)
    sleeper = psycopg.connect(dsn, application_name="report", autocommit=True)
    scanner = psycopg.connect(dsn, application_name="scanner", autocommit=True)
    for value in range(6):
        scanner.execute("SELECT count(*) FROM big WHERE v = %s", [value])
    waiter_pid, sleeper_pid = waiter.info.backend_pid, sleeper.info.backend_pid
    waiter.pgconn.send_query(b"UPDATE accounts SET v = 2 WHERE id = 1")
    sleeper.pgconn.send_query(b"SELECT pg_sleep(600)")
    replica.psql("SELECT pg_wal_replay_pause()")
    primary.psql("CREATE TABLE filler AS SELECT g FROM generate_series(1, 200000) g",
                 dbname="bench")
    time.sleep(SECOND * 2)  # let the faults age past the time thresholds
    primary.psql(f"SELECT 1 FROM pg_stat_activity WHERE pid IN ({waiter_pid}, {sleeper_pid})")
    return [*conns, holder, waiter, sleeper, scanner]


def time_doctor(dsn: str) -> tuple[float, dict[str, str]]:
    from stackmedic.testing import run_components

    start = time.perf_counter()
    run = run_components({"db": {"kind": "postgres", "dsn": dsn, "timeout": 10,
                                 "unique": [{"table": "customers", "columns": ["portal_id"]}]}},
                         thresholds=THRESHOLDS, deadline=20)
    elapsed = time.perf_counter() - start
    worst: dict[str, str] = {}
    order = ["ok", "info", "warning", "unknown", "critical"]
    for f in run.findings:
        current = worst.get(f.symptom, "ok")
        if order.index(f.severity.value) >= order.index(current):
            worst[f.symptom] = f.severity.value
    return elapsed, worst


def time_check_postgres(primary: PostgresServer, replica: PostgresServer
                        ) -> tuple[float, dict[str, str]]:
    tool = shutil.which("check_postgres") or shutil.which("check_postgres.pl")
    if tool is None:
        raise SystemExit("check_postgres not found: apt-get install -y check-postgres")
    status: dict[str, str] = {}
    # Debian's build refuses --PGBINDIR; it finds psql on PATH.
    env = {**os.environ, "PATH": f"{primary.bin}:{os.environ.get('PATH', '')}"}
    start = time.perf_counter()
    for action, (options, _symptom) in ACTIONS.items():
        hosts = [primary] + ([replica] if action == "hot_standby_delay" else [])
        cmd = [tool, f"--action={action}", "--dbuser=postgres",
               "--dbname=bench", "--host=" + ",".join(str(h.dir) for h in hosts),
               "--port=" + ",".join(str(h.port) for h in hosts), *options]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env).stdout
        words = out.split()
        status[action] = ("error" if not words or words[0] == "ERROR:" else
                          words[1].rstrip(":").lower())
        if status[action] == "error":
            print(f"check_postgres {action}: {out.strip()[:200]}", file=sys.stderr)
    return time.perf_counter() - start, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tables", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    primary = PostgresServer(settings={"max_connections": str(args.connections + 30),
                                       "shared_preload_libraries": "pg_stat_statements"})
    replica = None
    conns: list[Any] = []
    try:
        primary.psql("CREATE DATABASE bench")
        primary.psql(SETUP.format(tables=args.tables), dbname="bench")
        replica = replica_of(primary)
        conns = induce(primary, replica, args.connections)
        runs = [time_doctor(primary.dsn(dbname="bench")) for _ in range(args.runs)]
        peer, peer_status = time_check_postgres(primary, replica)
    finally:
        for conn in conns:
            conn.close()
        if replica is not None:
            replica.destroy()
        primary.destroy()
    times = [t for t, _ in runs]
    doctor, found = statistics.median(times), runs[-1][1]
    lines = [f"doctor, all 16 postgres rules, {args.tables} tables, {args.connections} "
             f"connections: median {doctor:.3f} s (runs: {', '.join(f'{t:.3f}' for t in times)})",
             f"peer, check_postgres {len(ACTIONS)} actions in sequence: {peer:.3f} s",
             f"ratio peer/doctor: {peer / doctor:.1f}x"]
    table = ["| symptom | stackmedic | check_postgres |", "|---|---|---|"]
    for symptom in sorted(found):
        theirs = [f"{a}: {peer_status[a]}" for a, (_, s) in ACTIONS.items() if s == symptom]
        table.append(f"| {symptom} | {found[symptom]} | {'; '.join(theirs) or '(no action)'} |")
    print("\n".join([*lines, "", *table]))
    if args.record:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        section = (f"\n## postgres checks vs check_postgres ({stamp})\n\n"
                   "Command: `.venv/bin/python bench/bench_postgres.py --record`  \n"
                   f"Machine: {platform.machine()}, Python {platform.python_version()}\n\n"
                   + "".join(f"- {line}\n" for line in lines) + "\n" + "\n".join(table) + "\n")
        with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as out:
            out.write(section)


if __name__ == "__main__":
    main()
