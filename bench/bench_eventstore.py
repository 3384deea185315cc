"""Bench: the event store side by side with the `eventsourcing` library.

    .venv/bin/python bench/bench_eventstore.py [--append 50000] [--scan 5000000]
                                               [--repeat 3] [--record]

On a throwaway PostgreSQL cluster (tests/fixtures/postgres.py: fsync off, like the
tests) and a SQLite file, in one run:

- append: N events in batches of 100 (one stream per batch), ours vs the
  `eventsourcing` recorder's `insert_events` on the same database;
- rebuild: a full rebuild into a simple projection (count per stream, one upsert per
  event into a table of the same database), ours vs reading `eventsourcing`'s
  notification log in pages and applying the same projection;
- integrity scan: `--scan` events generated in SQL, scanned by our scanner on our
  schema and, through its column mapping, on `eventsourcing`'s table.

Each measure runs `--repeat` times, ours and the peer interleaved so that a busy
moment on a shared machine hits both; the summary gives medians, ratios to the peer
and whether each goal is met. Peak RSS is sampled after each phase to show memory
stays bounded. Goals (issue 7):
append >= 20,000/s on PostgreSQL and >= 50,000/s on SQLite, scan >= 1,000,000/s on a
5,000,000-event PostgreSQL store, rebuild >= 100,000/s.
Needs `pip install "eventsourcing[postgres]"` (bench extra).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.postgres import PostgresServer  # noqa: E402

from stackmedic.eventstore import NewEvent, RecordedEvent, Tx, open_store  # noqa: E402
from stackmedic.eventstore.integrity import eventsourcing_mapping, scan  # noqa: E402
from stackmedic.eventstore.projections import Projection  # noqa: E402
from stackmedic.eventstore.rebuild import rebuild  # noqa: E402

BATCH = 100


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, count: int, work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    rate = count / seconds
    print(f"  {label:44} {count:>9,} in {seconds:6.2f}s = {rate:>11,.0f}/s  "
          f"(peak RSS {rss_mb():.0f} MB)", flush=True)
    return rate


class PerStream(Projection):
    """The simple projection: events counted per stream."""

    name = "per_stream"
    tables = ("per_stream",)

    def setup(self, tx: Tx) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS per_stream (stream TEXT PRIMARY KEY, "
                   "n INTEGER NOT NULL)")

    def apply(self, event: RecordedEvent, tx: Tx) -> None:
        self.apply_batch([event], tx)

    def apply_batch(self, events: Sequence[RecordedEvent], tx: Tx) -> None:
        for stream, n in Counter(e.stream for e in events).items():
            tx.execute("INSERT INTO per_stream VALUES (?, ?) ON CONFLICT (stream) DO UPDATE "
                       "SET n = per_stream.n + excluded.n", (stream, n))


def ours_append(dsn: str, total: int) -> None:
    with open_store(dsn) as store:
        for i in range(total // BATCH):
            store.append(f"order-{i}", [NewEvent("placed", {"n": n, "sku": "A-1"})
                                        for n in range(BATCH)])


def es_app(env: dict[str, str]) -> Any:
    from eventsourcing.application import Application

    class Bench(Application):
        pass

    return Bench(env=env)


def es_append(app: Any, total: int) -> None:
    from eventsourcing.persistence import StoredEvent

    for _ in range(total // BATCH):
        origin = uuid.uuid4()
        app.recorder.insert_events([
            StoredEvent(origin, n + 1, "bench:Placed",
                        json.dumps({"n": n, "sku": "A-1"}).encode()) for n in range(BATCH)])


def es_rebuild(app: Any, store_dsn: str) -> int:
    """The peer: page through the notification log and apply the same projection in
    one transaction per page (the library's own ProcessApplication does the same)."""
    processed = 0
    with open_store(store_dsn) as store:
        projection = PerStream()
        with store.transaction() as tx:
            projection.setup(tx)
            tx.execute("DELETE FROM per_stream")
        start = 1
        while True:
            page = app.recorder.select_notifications(start, 5000)
            if not page:
                return processed
            with store.transaction() as tx:
                for stream, count in Counter(str(n.originator_id) for n in page).items():
                    tx.execute("INSERT INTO per_stream VALUES (?, ?) ON CONFLICT (stream) DO "
                               "UPDATE SET n = per_stream.n + excluded.n", (stream, count))
            processed += len(page)
            start = page[-1].id + 1


def generate(server: PostgresServer, count: int) -> None:
    """`count` events in our schema and in eventsourcing's table, written by SQL."""
    server.psql(f"""
      DROP INDEX es_events_event_id; DROP INDEX es_events_stream_version;
      DROP INDEX es_events_category;
      INSERT INTO es_events (event_id, stream, category, version, type, data, metadata,
                             occurred_at)
      SELECT gen_random_uuid(), 'order-' || (i / 10), 'order', i % 10 + 1, 'placed',
             jsonb_build_object('n', i), '{{}}', now() - interval '2 days' + i * interval '1 ms'
        FROM generate_series(0, {count - 1}) i;
      CREATE UNIQUE INDEX es_events_event_id ON es_events (event_id);
      CREATE UNIQUE INDEX es_events_stream_version ON es_events (stream, version);
      CREATE INDEX es_events_category ON es_events (category, position);""", dbname="scan")
    server.psql("VACUUM ANALYZE es_events", dbname="scan")


TARGETS = {"append_pg_ours": 20_000, "append_sqlite_ours": 50_000,
           "rebuild_postgresql_ours": 100_000, "rebuild_sqlite_ours": 100_000,
           "scan_pg_ours": 1_000_000}
PEERS = {"append_pg_ours": "append_pg_es", "append_sqlite_ours": "append_sqlite_es",
         "rebuild_postgresql_ours": "rebuild_pg_es"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--append", type=int, default=50_000)
    parser.add_argument("--scan", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each measure (ours and the peer interleaved); the "
                             "median is reported, the machine being shared")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    runs: dict[str, list[float]] = {}

    def measure(key: str, label: str, count: int, work: Callable[[], Any]) -> None:
        runs.setdefault(key, []).append(timed(label, count, work))

    server = PostgresServer(settings={"shared_buffers": "256MB", "work_mem": "64MB",
                                      "max_parallel_workers_per_gather": "2"})
    tmp = Path(tempfile.mkdtemp(prefix="stackmedic-bench-"))
    n = args.append
    try:
        server.psql("CREATE DATABASE scan")
        apps = []
        for run in range(args.repeat):
            print(f"append, batches of {BATCH} (run {run + 1}/{args.repeat})")
            server.psql(f"CREATE DATABASE ours{run}")
            server.psql(f"CREATE DATABASE theirs{run}")
            ours_pg = server.dsn(dbname=f"ours{run}")
            app = es_app({"PERSISTENCE_MODULE": "eventsourcing.postgres",
                          "POSTGRES_DBNAME": f"theirs{run}", "POSTGRES_HOST": "127.0.0.1",
                          "POSTGRES_PORT": str(server.port), "POSTGRES_USER": "postgres",
                          "POSTGRES_PASSWORD": ""})
            lite_app = es_app({"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                               "SQLITE_DBNAME": str(tmp / f"theirs{run}.db")})
            ours_lite = f"sqlite:///{tmp / f'ours{run}.db'}"
            measure("append_pg_ours", "ours, PostgreSQL", n,
                    lambda d=ours_pg: ours_append(d, n))
            measure("append_pg_es", "eventsourcing, PostgreSQL", n,
                    lambda a=app: es_append(a, n))
            measure("append_sqlite_ours", "ours, SQLite (WAL)", n,
                    lambda d=ours_lite: ours_append(d, n))
            measure("append_sqlite_es", "eventsourcing, SQLite", n,
                    lambda a=lite_app: es_append(a, n))
            apps.append((app, lite_app, ours_pg, ours_lite))
        for run in range(args.repeat):
            print(f"full rebuild into a simple projection (run {run + 1}/{args.repeat})")
            app, _, ours_pg, ours_lite = apps[run]
            for label, dsn in (("PostgreSQL", ours_pg), ("SQLite", ours_lite)):
                with open_store(dsn) as store:
                    measure(f"rebuild_{label.lower()}_ours", f"ours, {label}", n,
                            lambda s=store: rebuild(s, PerStream(), batch_size=5000))
            measure("rebuild_pg_es", "eventsourcing notification log, PostgreSQL", n,
                    lambda a=app, d=ours_pg: es_rebuild(a, d))
        print(f"integrity scan, {args.scan:,} events generated in SQL")
        open_store(server.dsn(dbname="scan")).close()
        started = time.perf_counter()
        generate(server, args.scan)
        print(f"  (generated in {time.perf_counter() - started:.0f}s)")
        for _ in range(args.repeat):
            measure("scan_pg_ours", "ours, our schema, PostgreSQL", args.scan,
                    lambda: scan(server.dsn(dbname="scan")))
        _, _, ours_pg, ours_lite = apps[0]
        measure("scan_pg_es_table", f"ours, eventsourcing's table ({n:,})", n,
                lambda: scan(server.dsn(dbname="theirs0"),
                             eventsourcing_mapping("bench_events")))
        measure("scan_sqlite_ours", f"ours, our schema, SQLite ({n:,})", n,
                lambda: scan(ours_lite))
        for app, lite_app, _, _ in apps:
            app.close()
            lite_app.close()
    finally:
        server.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    lines = summary(runs)
    print("\n".join(lines))
    if args.record:
        record(lines, args)


def summary(runs: dict[str, list[float]]) -> list[str]:
    """Median per measure, its ratio to the peer's median, and the goal."""
    lines = ["| measure | median events/s | runs | vs peer | goal |", "|---|---:|---|---:|---|"]
    for key, rates in runs.items():
        median = statistics.median(rates)
        peer = PEERS.get(key)
        ratio = f"{median / statistics.median(runs[peer]):.2f}x" if peer in runs else ""
        goal = TARGETS.get(key)
        verdict = f">= {goal:,}: {'met' if median >= goal else 'NOT met'}" if goal else ""
        lines.append(f"| {key} | {median:,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} "
                     f"| {ratio} | {verdict} |")
    lines.append(f"| peak_rss_mb | {rss_mb():.0f} | | | |")
    return lines


def record(lines: list[str], args: argparse.Namespace) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    header = (f"\n## event store vs the `eventsourcing` library "
              f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n\n"
              f"Command: `.venv/bin/python bench/bench_eventstore.py --record` "
              f"(Python {platform.python_version()}, {platform.machine()}, append "
              f"{args.append:,}, scan {args.scan:,}, median of {args.repeat}, "
              f"load average {load})\n\n")
    with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as out:
        out.write(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
