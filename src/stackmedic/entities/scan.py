"""Scan stored entity rows for timestamp and validation problems.

`scan_table(dsn, table)` streams the rows of one table (SQLite or PostgreSQL, read
only, bounded memory: counts plus at most 10 sample ids per problem) and returns
findings for `entity.timestamps.naive` (a column type or value without zone),
`entity.timestamps.non_utc`, `entity.timestamps.order` (updated before created, or
in the future) and, given the entity class, `entity.validation.failing` per rule.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stackmedic.eventstore._dsn import is_sqlite, sqlite_path
from stackmedic.findings import Finding, Severity

__all__ = ["ScanOptions", "load_entity", "scan_table"]

_CHECK = "entities.scan"
_SAMPLES = 10
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


@dataclass
class ScanOptions:
    """Which columns hold what, and how far in the future a timestamp may be."""

    id_column: str = "id"
    created_column: str = "created_at"
    updated_column: str = "updated_at"
    future_tolerance: timedelta = timedelta(minutes=5)
    entity: type | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class _Tally:
    count: int = 0
    samples: list[str] = field(default_factory=list)

    def add(self, row_id: str) -> None:
        self.count += 1
        if len(self.samples) < _SAMPLES:
            self.samples.append(row_id)


def load_entity(spec: str) -> type:
    """`package.module:Class` → the class (for `--entity`)."""
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"--entity must look like module:Class, got {spec!r}")
    cls = getattr(importlib.import_module(module), name)
    if not isinstance(cls, type):
        raise ValueError(f"{spec} is not a class")
    return cls


def scan_table(dsn: str, table: str, options: ScanOptions | None = None,
               component: str | None = None) -> list[Finding]:
    """Findings for every entity.* symptom the rows of `table` show (ok ones too)."""
    opts = options or ScanOptions()
    for name in (table, opts.id_column, opts.created_column, opts.updated_column):
        if not _IDENT.match(name):
            raise ValueError(f"not a plain SQL identifier: {name!r}")
    naive, non_utc, order = _Tally(), _Tally(), _Tally()
    rules: dict[str, _Tally] = {}
    rows = 0
    naive_columns: list[str] = []
    columns = (opts.created_column, opts.updated_column)
    for row, column_types in _rows(dsn, table):
        rows += 1
        if rows == 1:  # a misspelt column would read as NULL everywhere: a clean verdict
            missing = [c for c in (opts.id_column, *columns) if c not in row]
            if missing:
                raise ValueError(f"table {table} has no column {', '.join(missing)} "
                                 f"(columns: {', '.join(map(str, row))})")
        row_id = str(row.get(opts.id_column))
        if column_types:
            naive_columns = [c for c in columns
                             if column_types.get(c) == "timestamp without time zone"]
        raw = [row.get(c) for c in columns]
        stamps = [_parse(value) for value in raw]
        # NULL (never updated) is no timestamp at all, not a naive one.
        if any(value is not None and (s is None or s.utcoffset() is None)
               for value, s in zip(raw, stamps, strict=True)):
            naive.add(row_id)
        elif any(s.utcoffset() != timedelta(0) for s in stamps if s is not None):
            non_utc.add(row_id)
        created, updated = (_aware(s) for s in stamps)
        limit = opts.now + opts.future_tolerance
        if (created and updated and updated < created) or any(
                s is not None and s > limit for s in (created, updated)):
            order.add(row_id)
        if opts.entity is not None:
            for rule in _violated_rules(opts.entity, row, opts):
                rules.setdefault(rule, _Tally()).add(row_id)
    where = component or table
    findings = [
        _finding("entity.timestamps.naive", where, naive, rows,
                 "timestamps without a zone", "rows written with naive datetimes (or a "
                 "`timestamp without time zone` column): the zone was lost when stored",
                 {"naive_columns": naive_columns}),
        _finding("entity.timestamps.non_utc", where, non_utc, rows,
                 "timestamps in a zone other than UTC", "a writer stores local time "
                 "instead of converting to UTC"),
        _finding("entity.timestamps.order", where, order, rows,
                 "timestamps out of order (updated before created) or in the future",
                 "a writer set timestamps from a skewed clock or a naive local time"),
    ]
    if opts.entity is not None:
        findings.append(_validation_finding(where, table, rules, rows))
    return findings


def _finding(symptom: str, component: str, tally: _Tally, rows: int, what: str,
             cause: str, extra: dict[str, Any] | None = None) -> Finding:
    bad = tally.count > 0 or bool(extra and extra.get("naive_columns"))
    summary = (f"{tally.count} of {rows} rows have {what}" if bad
               else f"no {what} in {rows} rows")
    return Finding(check=_CHECK, symptom=symptom, component=component,
                   severity=Severity.WARNING if bad else Severity.OK, summary=summary,
                   observed=tally.count, threshold=0, unit="rows",
                   evidence={"table": component, "rows": rows, "count": tally.count,
                             "sample_ids": tally.samples, **(extra or {})},
                   cause=cause if bad else None, identity=("table",))


def _validation_finding(component: str, table: str, rules: dict[str, _Tally],
                        rows: int) -> Finding:
    failing = sum(t.count for t in rules.values())
    ranked = sorted(rules.items(), key=lambda kv: kv[1].count, reverse=True)
    by_rule = {rule: {"count": t.count, "sample_ids": t.samples} for rule, t in ranked[:_SAMPLES]}
    worst = ranked[0][0] if ranked else ""
    summary = (f"{failing} rule violations in {rows} rows of {table}; most: {worst}"
               if failing else f"all {rows} rows of {table} pass their validation rules")
    return Finding(check=_CHECK, symptom="entity.validation.failing", component=component,
                   severity=Severity.WARNING if failing else Severity.OK, summary=summary,
                   observed=failing, threshold=0, unit="violations",
                   evidence={"table": table, "rows": rows, "by_rule": by_rule,
                             "top_rule": worst},
                   cause=("rows were stored before the rules existed, or a writer bypasses "
                          "validation" if failing else None), identity=("table",))


def _violated_rules(entity: type, row: dict[str, Any], opts: ScanOptions) -> list[str]:
    """Rule names the row breaks once loaded into `entity` (stored timestamps included)."""
    try:
        if hasattr(entity, "from_row"):
            instance = entity.from_row(row)
        else:
            import inspect as pyinspect

            params = pyinspect.signature(entity).parameters
            kwargs = {k: v for k, v in row.items() if k in params}
            stamps = [(attr, _parse(row.get(column))) for column, attr in
                      ((opts.created_column, "created_at"), (opts.updated_column, "updated_at"))]
            for attr, value in stamps:  # stored text/NULL would not load as a datetime field
                if attr in params:
                    kwargs.pop(attr, None)
                    if value is not None:
                        kwargs[attr] = value
            instance = entity(**kwargs)
            for attr, value in stamps:
                if attr not in params and value is not None:
                    setattr(instance, attr, value)
        return [v.rule for v in instance.violations()]
    except Exception as err:  # a row the class cannot even load is a broken rule too
        return [f"load.{type(err).__name__}"]


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:  # Unix time (SQLite has no timestamp type): UTC by definition
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


def _rows(dsn: str, table: str) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """Rows as dicts, streamed; on PostgreSQL also column → data type."""
    return _sqlite_rows(dsn, table) if is_sqlite(dsn) else _postgres_rows(dsn, table)


def _sqlite_rows(dsn: str, table: str) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    import sqlite3

    conn = sqlite3.connect(f"file:{sqlite_path(dsn)}?mode=ro", uri=True)
    try:
        cursor = conn.execute(f'SELECT * FROM "{table}"')  # identifier checked by caller
        names = [d[0] for d in cursor.description]
        for values in cursor:
            yield dict(zip(names, values, strict=True)), {}
    finally:
        conn.close()


def _postgres_rows(dsn: str, table: str) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    import psycopg
    from psycopg import sql
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, autocommit=False, connect_timeout=10,
                         options="-c default_transaction_read_only=on "
                                 "-c statement_timeout=600000 -c TimeZone=UTC") as conn:
        schema, _, name = table.rpartition(".")
        types: dict[str, str] = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = %s AND (%s = '' OR table_schema = %s)",
            (name, schema, schema)).fetchall())
        with conn.cursor("stackmedic_entities_scan", row_factory=dict_row) as cursor:
            cursor.itersize = 2000
            cursor.execute(sql.SQL("SELECT * FROM {}").format(
                sql.Identifier(*table.split("."))))
            for row in cursor:
                yield row, types
