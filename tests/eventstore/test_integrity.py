"""The integrity scanner finds every planted corruption, with stream and position, on
our schema (both backends) and on the mapped `eventsourcing` and Message DB tables."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stackmedic.eventstore import NewEvent, open_store
from stackmedic.eventstore.integrity import (
    MESSAGE_DB,
    IntegrityReport,
    eventsourcing_mapping,
    scan,
)

NOW = datetime.now(UTC)
FUTURE = datetime(2999, 1, 1, tzinfo=UTC)
ANCIENT = datetime(1970, 1, 1, tzinfo=UTC)
SCHEMAS = {"e": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}}


def found(report: IntegrityReport, kind: str) -> set[tuple[str | None, int | None]]:
    return {(a.stream, a.position) for a in report.samples[kind]}


def _plant_ours(execute: Any, sqlite: bool) -> dict[str, set[tuple[str, int]]]:
    """Insert corrupt rows straight into our tables; returns kind → {(stream, position)}."""
    stamp = (lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) if sqlite else (lambda d: d)
    dup_id = execute("SELECT event_id FROM es_events WHERE position = 1")[0][0]
    rows = [  # position, stream, version, event_id, data, occurred_at
        (101, "gap-1", 4, str(uuid.uuid4()), '{"n": 1}', NOW),
        (102, "rep-1", 2, str(uuid.uuid4()), '{"n": 1}', NOW),
        (103, "dup-1", 1, str(dup_id), '{"n": 1}', NOW),
        (104, "schema-1", 1, str(uuid.uuid4()), '{"n": "one"}', NOW),
        (105, "old-1", 1, str(uuid.uuid4()), '{"n": 1}', ANCIENT),
        (106, "fut-1", 1, str(uuid.uuid4()), '{"n": 1}', FUTURE),
    ]
    if sqlite:
        rows.append((107, "json-1", 1, str(uuid.uuid4()), "{not json", FUTURE))
    mark = "?" if sqlite else "%s"
    for position, stream, version, event_id, data, when in rows:
        execute(f"INSERT INTO es_events (position, event_id, stream, category, version, type, "
                f"data, metadata, occurred_at) VALUES ({', '.join([mark] * 9)})",
                (position, event_id, stream, stream.split("-")[0], version, "e", data, "{}",
                 stamp(when)))
    execute(f"INSERT INTO es_checkpoints VALUES ('ahead', 5000, {mark})", (stamp(NOW),))
    expected = {"version_gap": {("gap-1", 101)}, "version_repeat": {("rep-1", 102)},
                "duplicate_event_id": {("dup-1", 103)},
                "payload_invalid": {("schema-1", 104)},
                "timestamp_ancient": {("old-1", 105)}, "timestamp_future": {("fut-1", 106)},
                "position_time_disorder": {("old-1", 105)},
                "checkpoint_ahead": {(None, 5000)}}
    if sqlite:
        expected["payload_invalid"].add(("json-1", 107))
        expected["timestamp_future"].add(("json-1", 107))
    return expected


def _seed(dsn: str) -> None:
    with open_store(dsn) as store:
        for stream in ("ok-1", "gap-1", "rep-1"):
            store.append(stream, [NewEvent("e", {"n": 1}), NewEvent("e", {"n": 2})])


def test_scanner_finds_every_planted_corruption_on_our_sqlite_schema(tmp_path: Path) -> None:
    """Gap, repeat, duplicate id, bad JSON, schema violation, future, ancient, disorder and
    a checkpoint beyond the head are each reported at their stream and position."""
    dsn = f"sqlite:///{tmp_path / 'events.db'}"
    _seed(dsn)
    with sqlite3.connect(tmp_path / "events.db") as conn:
        conn.execute("DROP INDEX es_events_event_id")  # the damage a real corruption does
        conn.execute("DROP INDEX es_events_stream_version")
        expected = _plant_ours(lambda sql, p=(): conn.execute(sql, p).fetchall(), sqlite=True)
    report = scan(dsn, schemas=SCHEMAS)
    assert {kind: found(report, kind) for kind in expected} == expected
    assert report.events == 13 and report.head == 107


def test_scanner_finds_every_planted_corruption_on_our_postgres_schema(pg_dsn: str) -> None:
    """On PostgreSQL (jsonb payloads, so schema violations stand in for bad JSON) every
    planted corruption is reported at its stream and position."""
    _seed(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX es_events_event_id")
        conn.execute("DROP INDEX es_events_stream_version")
        expected = _plant_ours(lambda sql, p=(): conn.execute(sql, p).fetchall()
                               if sql.startswith("SELECT") else conn.execute(sql, p), False)
    report = scan(pg_dsn, schemas=SCHEMAS)
    assert {kind: found(report, kind) for kind in expected} == expected


def test_a_clean_store_scans_clean(dsn: str) -> None:
    """A store written only through the API has no anomalies; its unique event-id
    index stands in for the duplicate check unless constraints are not trusted."""
    _seed(dsn)
    report = scan(dsn, schemas=SCHEMAS)
    assert report.ok and report.events == 6
    assert report.skipped == {
        "duplicate_event_id": "guaranteed by unique index es_events_event_id"}
    untrusting = scan(dsn, schemas=SCHEMAS, trust_constraints=False)
    assert untrusting.ok and untrusting.skipped == {}


@pytest.fixture
def eventsourcing_app(pg_dsn: str) -> Iterator[tuple[Any, str]]:
    """An `eventsourcing` application persisting to the throwaway PostgreSQL database."""
    pytest.importorskip("eventsourcing")
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Dog(Aggregate):
        @event("Registered")
        def __init__(self, name: str) -> None:
            self.name = name

        @event("Tricked")
        def add_trick(self, trick: str) -> None:
            self.trick = trick

    info = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    env = {"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_DBNAME": info["dbname"],
           "POSTGRES_HOST": info["host"], "POSTGRES_PORT": str(info["port"]),
           "POSTGRES_USER": info["user"], "POSTGRES_PASSWORD": ""}
    class DogSchool(Application):
        pass

    app = DogSchool(env=env)
    for name in ("fido", "rex"):
        dog = Dog(name)
        dog.add_trick("roll")
        app.save(dog)
    yield Dog, pg_dsn
    app.close()


def test_scanner_on_the_eventsourcing_librarys_stored_events(
        eventsourcing_app: tuple[Any, str]) -> None:
    """Gap, repeat, bad JSON, future and ancient times (inside the state) are found in
    the real `dogschool_events` table written by the `eventsourcing` library."""
    _, dsn = eventsourcing_app
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE dogschool_events DROP CONSTRAINT dogschool_events_pkey")
        origin, state = conn.execute("SELECT originator_id, state FROM dogschool_events "
                                     "ORDER BY notification_id LIMIT 1").fetchone()

        def plant(version: int, body: bytes, originator: Any = origin) -> int:
            return int(conn.execute(
                "INSERT INTO dogschool_events (originator_id, originator_version, topic, state) "
                "VALUES (%s, %s, 'x:Y', %s) RETURNING notification_id",
                (originator, version, body)).fetchone()[0])

        def at(when: datetime) -> bytes:
            doc = json.loads(bytes(state))
            doc["timestamp"]["_data_"] = when.isoformat()
            return json.dumps(doc).encode()

        repeat = plant(2, bytes(state))
        gap = plant(5, bytes(state))
        bad = plant(1, b"\x80not json", uuid.uuid4())
        future = plant(1, at(FUTURE), uuid.uuid4())
        ancient = plant(1, at(ANCIENT), uuid.uuid4())
    report = scan(dsn, eventsourcing_mapping("dogschool_events"))
    stream = str(origin)
    assert found(report, "version_repeat") == {(stream, repeat)}
    assert found(report, "version_gap") == {(stream, gap)}
    assert {p for _, p in found(report, "payload_invalid")} == {bad}
    assert {p for _, p in found(report, "timestamp_future")} == {future}
    assert {p for _, p in found(report, "timestamp_ancient")} == {ancient}
    assert "duplicate_event_id" in report.skipped and report.events == 9


MESSAGE_DB_DDL = """
CREATE SCHEMA message_store;
CREATE TABLE message_store.messages (
  global_position bigserial NOT NULL, position bigint NOT NULL,
  time TIMESTAMP WITHOUT TIME ZONE DEFAULT (now() AT TIME ZONE 'utc') NOT NULL,
  stream_name text NOT NULL, type text NOT NULL, data jsonb, metadata jsonb,
  id UUID NOT NULL DEFAULT gen_random_uuid());
ALTER TABLE message_store.messages ADD PRIMARY KEY (global_position);
"""


def test_scanner_on_a_message_db_messages_table(pg_dsn: str) -> None:
    """Gap, repeat, duplicate id, future and ancient times are found in Message DB's
    `messages` table (positions from 0, `time` in UTC without zone)."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(MESSAGE_DB_DDL)

        def write(stream: str, position: int, when: str = "now() AT TIME ZONE 'utc'",
                  event_id: str = "gen_random_uuid()", data: str = '{"n": 1}') -> int:
            return int(conn.execute(
                f"INSERT INTO message_store.messages (stream_name, position, type, data, "
                f"metadata, time, id) VALUES (%s, %s, 'e', %s, '{{}}', {when}, {event_id}) "
                "RETURNING global_position", (stream, position, data)).fetchone()[0])

        for stream in ("ok-1", "gap-1", "rep-1"):
            write(stream, 0)
            write(stream, 1)
        first_id = conn.execute("SELECT id FROM message_store.messages "
                                "WHERE global_position = 1").fetchone()[0]
        gap = write("gap-1", 3)
        repeat = write("rep-1", 1)
        duplicate = write("dup-1", 0, event_id=f"'{first_id}'::uuid")
        ancient = write("old-1", 0, when="'1970-01-01'")
        future = write("fut-1", 0, when="'2999-01-01'")
    report = scan(pg_dsn, MESSAGE_DB, schemas={"e": {"required": ["n"]}})
    assert found(report, "version_gap") == {("gap-1", gap)}
    assert found(report, "version_repeat") == {("rep-1", repeat)}
    assert found(report, "duplicate_event_id") == {("dup-1", duplicate)}
    assert found(report, "timestamp_ancient") == {("old-1", ancient)}
    assert found(report, "timestamp_future") == {("fut-1", future)}
    assert found(report, "position_time_disorder") == {("old-1", ancient)}
    assert report.counts["payload_invalid"] == 0




def test_bucket_pass_finds_exactly_what_the_event_by_event_check_finds(
        dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The time check skips buckets of 1024 positions that cannot hold an anomaly: on a
    store with disorder inside a bucket and across a bucket boundary, a future event,
    an ancient one and an in-tolerance step back, it reports the same anomalies as
    checking every event."""
    from datetime import timedelta

    from stackmedic.eventstore import integrity

    base = NOW - timedelta(hours=1)
    times = {p: base + timedelta(milliseconds=10 * p) for p in range(1, 6001)}
    times[500] -= timedelta(hours=2)          # disorder inside bucket 0
    times[1024] = times[1023] - timedelta(minutes=2)  # first of bucket 1, before 1023
    times[1500] -= timedelta(seconds=59)      # within the 60 s skew: not an anomaly
    times[2047] = FUTURE                      # future; 2048 then steps back: disorder
    times[2600] = ANCIENT                     # ancient and disorder
    times[4096] = times[4095] - timedelta(minutes=2)  # after clean bucket 3: needs 4095
    with open_store(dsn) as store:
        for first in range(1, 6001, 100):
            store.append(f"s-{first}", [NewEvent("e", {"n": 1}, occurred_at=times[p])
                                        for p in range(first, first + 100)])
    checked: list[list[tuple[int, int, int]]] = []
    times_check = integrity._Scan.times
    monkeypatch.setattr(integrity._Scan, "times",
                        lambda self, ranges: checked.append(ranges) or times_check(self, ranges))
    fast = scan(dsn)
    monkeypatch.setattr(integrity._Scan, "exact_only", True)
    exact = scan(dsn)
    assert checked == [[(0, 0, 3072), (3072, 4096, 5120)], [(0, 0, 0)]]  # 3 and 5 skipped
    assert found(fast, "timestamp_future") == {("s-2001", 2047)}
    assert found(fast, "timestamp_ancient") == {("s-2501", 2600)}
    assert {p for _, p in found(fast, "position_time_disorder")} == {500, 1024, 2048, 2600,
                                                                     4096}
    assert fast.to_dict() | {"seconds": 0} == exact.to_dict() | {"seconds": 0}
    assert fast.events == 6000
