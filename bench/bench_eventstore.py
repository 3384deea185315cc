"""Bench: the event store side by side with the `eventsourcing` library.

    .venv/bin/python bench/bench_eventstore.py [--append 50000] [--scan 5000000] [--record]

On a throwaway PostgreSQL cluster (tests/fixtures/postgres.py: fsync off, like the
tests) and a SQLite file, in one run:

- append: N events in batches of 100 (one stream per batch), ours vs the
  `eventsourcing` recorder's `insert_events` on the same database;
- rebuild: a full rebuild into a simple projection (count per stream, one upsert per
  event into a table of the same database), ours vs reading `eventsourcing`'s
  notification log in pages and applying the same projection;
- integrity scan: `--scan` events generated in SQL, scanned by our scanner on our
  schema and, through its column mapping, on `eventsourcing`'s table.

Peak RSS is sampled after each phase to show memory stays bounded. Goals (issue 7):
append >= 20,000/s on PostgreSQL and >= 50,000/s on SQLite, scan >= 1,000,000/s on a
5,000,000-event PostgreSQL store, rebuild >= 100,000/s.
Needs `pip install "eventsourcing[postgres]"` (bench extra).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--append", type=int, default=50_000)
    parser.add_argument("--scan", type=int, default=5_000_000)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    results: dict[str, float] = {}
    server = PostgresServer(settings={"shared_buffers": "256MB", "work_mem": "64MB",
                                      "max_parallel_workers_per_gather": "2"})
    tmp = Path(tempfile.mkdtemp(prefix="stackmedic-bench-"))
    try:
        server.psql("CREATE DATABASE ours")
        server.psql("CREATE DATABASE theirs")
        server.psql("CREATE DATABASE scan")
        ours_pg = server.dsn(dbname="ours")
        env = {"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_DBNAME": "theirs",
               "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(server.port),
               "POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": ""}
        app = es_app(env)
        n = args.append
        print(f"append, batches of {BATCH}")
        results["append_pg_ours"] = timed("ours, PostgreSQL", n, lambda: ours_append(ours_pg, n))
        results["append_pg_es"] = timed("eventsourcing, PostgreSQL", n, lambda: es_append(app, n))
        ours_lite = f"sqlite:///{tmp / 'ours.db'}"
        lite_app = es_app({"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                           "SQLITE_DBNAME": str(tmp / "theirs.db")})
        results["append_sqlite_ours"] = timed("ours, SQLite (WAL)", n,
                                              lambda: ours_append(ours_lite, n))
        results["append_sqlite_es"] = timed("eventsourcing, SQLite", n,
                                            lambda: es_append(lite_app, n))
        print("full rebuild into a simple projection")
        for label, dsn in (("PostgreSQL", ours_pg), ("SQLite", ours_lite)):
            with open_store(dsn) as store:
                key = f"rebuild_{label.lower()}_ours"
                results[key] = timed(f"ours, {label}", n,
                                     lambda s=store: rebuild(s, PerStream(), batch_size=5000))
        results["rebuild_pg_es"] = timed("eventsourcing notification log, PostgreSQL", n,
                                         lambda: es_rebuild(app, ours_pg))
        app.close()
        lite_app.close()
        print(f"integrity scan, {args.scan:,} events generated in SQL")
        open_store(server.dsn(dbname="scan")).close()
        started = time.perf_counter()
        generate(server, args.scan)
        print(f"  (generated in {time.perf_counter() - started:.0f}s)")
        results["scan_pg_ours"] = timed("ours, our schema, PostgreSQL", args.scan,
                                        lambda: scan(server.dsn(dbname="scan")))
        results["scan_pg_es_table"] = timed(f"ours, eventsourcing's table ({n:,})", n,
                                            lambda: scan(server.dsn(dbname="theirs"),
                                                         eventsourcing_mapping("bench_events")))
        results["scan_sqlite_ours"] = timed("ours, our schema, SQLite", n,
                                            lambda: scan(ours_lite))
        results["peak_rss_mb"] = rss_mb()
    finally:
        server.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.record:
        record(results, args)


def record(results: dict[str, float], args: argparse.Namespace) -> None:
    lines = [f"\n### bench_eventstore.py, {datetime.now(UTC):%Y-%m-%d %H:%M}Z "
             f"({platform.python_version()}, {platform.machine()}, append {args.append:,}, "
             f"scan {args.scan:,})\n", "| measure | events/s |", "|---|---:|"]
    lines += [f"| {k} | {v:,.0f} |" for k, v in results.items()]
    with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
