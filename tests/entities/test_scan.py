"""`entities scan` over real SQLite and PostgreSQL tables with planted timestamp faults."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from stackmedic.entities import TimestampedEntity, Violation
from stackmedic.entities.cli import app
from stackmedic.entities.scan import ScanOptions, scan_table
from stackmedic.findings import Finding, Severity
from tests.fixtures.postgres import PostgresServer

ROWS = [  # id, created_at, updated_at, balance
    ("ok-1", "2024-01-01T10:00:00+00:00", "2024-01-02T10:00:00Z", 5),
    ("naive-1", "2024-01-01 10:00:00", "2024-01-02 10:00:00", 5),
    ("cet-1", "2024-01-01T10:00:00+01:00", "2024-01-02T10:00:00+01:00", -3),
    ("order-1", "2024-01-05T10:00:00+00:00", "2024-01-02T10:00:00+00:00", 5),
    ("future-1", "2024-01-05T10:00:00+00:00", "2999-01-01T00:00:00+00:00", -1),
]


@dataclass(eq=False)
class Account(TimestampedEntity):
    id: str
    balance: int

    def entity_id(self) -> str:
        return self.id

    def validate(self) -> Iterator[Violation]:
        if self.balance < 0:
            yield Violation("balance.non_negative", f"balance is {self.balance}")


def _sqlite(tmp_path: Path) -> str:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accounts (id TEXT, created_at TEXT, updated_at TEXT, "
                     "balance INTEGER)")
        conn.executemany("INSERT INTO accounts VALUES (?, ?, ?, ?)", ROWS)
    return f"sqlite:///{path}"


def _by_symptom(findings: list[Finding]) -> dict[str, Finding]:
    return {f.symptom: f for f in findings}


def test_scan_finds_naive_non_utc_and_order_problems_in_sqlite(tmp_path: Path) -> None:
    """Each planted row is reported under its symptom with its id as a sample."""
    found = _by_symptom(scan_table(_sqlite(tmp_path), "accounts",
                                   ScanOptions(entity=Account)))
    assert found["entity.timestamps.naive"].evidence["sample_ids"] == ["naive-1"]
    assert found["entity.timestamps.non_utc"].evidence["sample_ids"] == ["cet-1"]
    assert found["entity.timestamps.order"].evidence["sample_ids"] == ["order-1", "future-1"]
    assert found["entity.timestamps.order"].summary == (
        "2 of 5 rows have timestamps out of order (updated before created) or in the future")
    validation = found["entity.validation.failing"]
    assert validation.evidence["by_rule"] == {
        "balance.non_negative": {"count": 2, "sample_ids": ["cet-1", "future-1"]},
        "load.ValueError": {"count": 1, "sample_ids": ["order-1"]}}
    assert all(f.severity is Severity.WARNING for f in found.values())


def test_scan_of_a_clean_table_gives_ok_findings_with_counts(tmp_path: Path) -> None:
    """A table without faults yields ok findings with observed 0."""
    path = tmp_path / "clean.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id TEXT, created_at TEXT, updated_at TEXT)")
        conn.execute("INSERT INTO t VALUES ('a', '2024-01-01T00:00:00Z', '2024-01-01T00:00:01Z')")
    findings = scan_table(f"sqlite:///{path}", "t")
    assert {(f.severity, f.observed) for f in findings} == {(Severity.OK, 0)}


def test_scan_flags_timestamp_without_time_zone_columns_in_postgres(
        pg_factory: Callable[..., PostgresServer]) -> None:
    """A `timestamp without time zone` column is reported naive; timestamptz order is checked."""
    server = pg_factory()
    server.psql("CREATE TABLE accounts (id text, created_at timestamp, updated_at timestamptz, "
                "balance int);"
                "INSERT INTO accounts VALUES ('a', '2024-01-02', '2024-01-01T00:00:00Z', 1)")
    found = _by_symptom(scan_table(server.dsn(), "accounts", ScanOptions(entity=Account)))
    naive = found["entity.timestamps.naive"]
    assert naive.evidence["naive_columns"] == ["created_at"] and naive.observed == 1
    assert found["entity.timestamps.order"].evidence["sample_ids"] == ["a"]
    assert found["entity.validation.failing"].evidence["by_rule"] == {
        "load.ValueError": {"count": 1, "sample_ids": ["a"]}}


def test_cli_scan_prints_json_and_exits_warning(tmp_path: Path) -> None:
    """`entities scan --json` prints the findings and exits 1 (warning)."""
    result = CliRunner().invoke(app, ["scan", "--dsn", _sqlite(tmp_path), "--table", "accounts",
                                      "--entity", "tests.entities.test_scan:Account", "--json"])
    assert result.exit_code == 1, result.output
    symptoms = {f["symptom"] for f in json.loads(result.output) if f["severity"] == "warning"}
    assert symptoms == {"entity.timestamps.naive", "entity.timestamps.non_utc",
                        "entity.timestamps.order", "entity.validation.failing"}


def test_cli_scan_reports_a_missing_table_as_unknown(tmp_path: Path) -> None:
    """A table that does not exist exits 3 with a one-line reason, no traceback."""
    result = CliRunner().invoke(app, ["scan", "--dsn", _sqlite(tmp_path), "--table", "nope"])
    assert result.exit_code == 3 and "no such table" in result.output




def test_null_and_unix_time_are_not_naive_and_a_wrong_column_is_an_error(
        tmp_path: Path) -> None:
    """A NULL updated_at (never updated) and Unix-time integers are not naive
    timestamps; a misspelt column name is an error, not a clean verdict."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id TEXT, created_at, updated_at)")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [
            ("a", "2024-01-01T00:00:00Z", None), ("b", 1704067200, 1704067201.5),
            ("c", "2024-01-01 00:00:00", None)])
    found = _by_symptom(scan_table(f"sqlite:///{path}", "t"))
    assert found["entity.timestamps.naive"].evidence["sample_ids"] == ["c"]
    assert found["entity.timestamps.order"].observed == 0
    result = CliRunner().invoke(app, ["scan", "--dsn", f"sqlite:///{path}", "--table", "t",
                                      "--updated-column", "modified_at"])
    assert result.exit_code == 3 and "no column modified_at" in result.output


@dataclass(eq=False)
class StampedAccount(TimestampedEntity):
    """An entity whose created_at is a dataclass field (set by __init__)."""

    id: str
    balance: int = 0
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def entity_id(self) -> str:
        return self.id

    def validate(self) -> Iterator[Violation]:
        if self.balance < 0:
            yield Violation("balance.non_negative", f"balance is {self.balance}")


def test_validation_loads_stored_text_timestamps_into_datetime_fields(tmp_path: Path) -> None:
    """An entity with a created_at field gets the stored text parsed (a NULL
    updated_at is left alone): only the rule a row really breaks counts, no load error."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id TEXT, created_at TEXT, updated_at TEXT, balance INT)")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [
            ("a", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", 1),
            ("b", "2024-01-01T00:00:00Z", None, -1)])
    found = _by_symptom(scan_table(f"sqlite:///{path}", "t",
                                   ScanOptions(entity=StampedAccount)))
    assert found["entity.validation.failing"].evidence["by_rule"] == {
        "balance.non_negative": {"count": 1, "sample_ids": ["b"]}}
