"""N+1 detection across log formats and ORMs, from real log files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from stackmedic.findings import Finding, Severity
from stackmedic.logs.diagnose import LogOptions, logs_findings
from stackmedic.logs.formats import Record
from stackmedic.logs.nplusone import StatementCounter
from stackmedic.logs.source import iter_records
from stackmedic.testing import with_symptom

Line = Callable[[str, int, str], str]
"""A log line of one format: (request id, customer id, table) -> text."""

REQUESTS = ("8f1b2c3d-0000-4000-8000-00000000000a", "8f1b2c3d-0000-4000-8000-00000000000b",
            "8f1b2c3d-0000-4000-8000-00000000000c")
AT = "2026-11-22T03:00:01Z"


def _sa(table: str, literal: str) -> str:
    return f"SELECT {table}.id, {table}.total FROM {table} WHERE {table}.customer_id = {literal}"


def _django(table: str, n: int) -> str:
    return (f'(0.001) SELECT "{table}"."id", "{table}"."total" FROM "{table}" WHERE '
            f'"{table}"."customer_id" = {n} LIMIT 21; args=({n},); alias=default')


def _rails(table: str) -> str:
    return (f'{table.capitalize()} Load (0.3ms)  SELECT "{table}".* FROM "{table}" WHERE '
            f'"{table}"."customer_id" = $1 LIMIT $2')


def _hibernate(table: str) -> str:
    return f"select o1_0.id,o1_0.total from {table} o1_0 where o1_0.customer_id=?"


FORMATS: dict[str, tuple[Line, str]] = {
    "structlog-json": (lambda r, n, t: json.dumps(
        {"logger": "sqlalchemy.engine.Engine", "event": _sa(t, "%(customer_id)s"),
         "request_id": r, "timestamp": AT}),
        _sa("orders", "?")),
    "python-json-logger": (lambda r, n, t: json.dumps(
        {"asctime": "2026-11-22 03:00:01,000", "name": "sqlalchemy.engine.Engine",
         "levelname": "INFO", "message": _sa(t, str(n)), "correlation_id": r}),
        _sa("orders", "?")),
    "django-json": (lambda r, n, t: json.dumps(
        {"time": AT, "level": "DEBUG", "logger": "django.db.backends",
         "message": _django(t, n), "duration": 0.001, "x-request-id": r}),
        'SELECT "orders"."id", "orders"."total" FROM "orders" WHERE "orders"."customer_id" = ? '
        "LIMIT ?"),
    "rails-json": (lambda r, n, t: json.dumps(
        {"@timestamp": AT, "level": "debug", "message": f'  {_rails(t)}  [["customer_id", {n}], '
         f'["LIMIT", 1]]', "requestId": r}),
        'SELECT "orders".* FROM "orders" WHERE "orders"."customer_id" = ? LIMIT ?'),
    "logfmt-django": (lambda r, n, t: f"ts={AT} level=debug logger=django.db.backends "
                      f"req_id={r} msg={json.dumps(_django(t, n))}",
                      'SELECT "orders"."id", "orders"."total" FROM "orders" WHERE '
                      '"orders"."customer_id" = ? LIMIT ?'),
    "text-request-id-first": (lambda r, n, t: f"2026-11-22 03:00:01,000 INFO [request_id={r}] "
                              f"sqlalchemy.engine.Engine {_sa(t, str(n))}",
                              _sa("orders", "?")),
    "text-request-id-after-logger": (lambda r, n, t: f"2026-11-22 03:00:01,000 INFO "
                                     f"sqlalchemy.engine.Engine [request_id={r}] {_sa(t, str(n))}",
                                     _sa("orders", "?")),
    "text-request-id-last": (lambda r, n, t: f"2026-11-22 03:00:01,000 INFO "
                             f"sqlalchemy.engine.Engine {_sa(t, str(n))} request_id={r}",
                             _sa("orders", "?")),
    "text-django": (lambda r, n, t: f"DEBUG 2026-11-22 03:00:01,000 django.db.backends "
                    f"{_django(t, n)} trace_id={r}",
                    'SELECT "orders"."id", "orders"."total" FROM "orders" WHERE '
                    '"orders"."customer_id" = ? LIMIT ?'),
    "text-activerecord": (lambda r, n, t: f"D, [2026-11-22T03:00:01.000000 #4242] DEBUG -- : "
                          f"[{r}]   \x1b[1m\x1b[36m{_rails(t)}\x1b[0m  "
                          f'[["customer_id", {n}], ["LIMIT", 1]]',
                          'SELECT "orders".* FROM "orders" WHERE "orders"."customer_id" = ? '
                          "LIMIT ?"),
    "text-hibernate": (lambda r, n, t: f"2026-11-22T03:00:01.000Z DEBUG 4242 --- "
                       f"[nio-8080-exec-1] org.hibernate.SQL : {_hibernate(t)} traceId={r}",
                       _hibernate("orders")),
}


def _write(path: Path, line: Line, statements: list[tuple[str, int, str]]) -> None:
    """The statements, each followed by an unrelated line of the same request."""
    with open(path, "w") as f:
        for request, n, table in statements:
            f.write(line(request, n, table) + "\n")
            f.write(line(request, n, table).replace("SELECT", "Handled", 1)
                    .replace("select", "handled", 1) + "\n")


def _interleaved(per_request: int, tables: Callable[[int], str]) -> list[tuple[str, int, str]]:
    return [(request, 100 * k + i, tables(i)) for i in range(per_request)
            for k, request in enumerate(REQUESTS)]


def _n_plus_one(path: Path) -> Finding:
    found = with_symptom(logs_findings([path], "api", LogOptions(workers=1)),
                         "logs.pattern.n_plus_one")
    assert len(found) == 1, [f.summary for f in found]
    return found[0]


@pytest.mark.parametrize("name", FORMATS)
def test_thirty_selects_per_request_are_an_n_plus_one(tmp_path: Path, name: str) -> None:
    """30 selects differing only in the id, in each of 3 interleaved requests: one
    finding with the normalised statement, 30 per request, the 3 requests as examples."""
    line, template = FORMATS[name]
    log = tmp_path / "app.log"
    _write(log, line, _interleaved(30, lambda i: "orders"))
    finding = _n_plus_one(log)
    assert finding.severity is Severity.WARNING
    assert finding.evidence["template"] == template
    assert finding.evidence["count"] == 30 and finding.evidence["requests"] == 3
    assert finding.evidence["request"] in REQUESTS
    assert sorted(finding.evidence["example_requests"]) == sorted(REQUESTS)
    counter = StatementCounter()
    for record in iter_records([log]):
        counter.add(record)
    [found] = counter.repeated(10)
    assert sorted(found.example_requests) == sorted(REQUESTS)


@pytest.mark.parametrize("name", FORMATS)
def test_thirty_different_statements_in_one_request_are_none(tmp_path: Path, name: str) -> None:
    """30 statements on 30 different tables in each request: no template repeats."""
    log = tmp_path / "app.log"
    _write(log, FORMATS[name][0], _interleaved(30, lambda i: f"table{i}x"))
    finding = _n_plus_one(log)
    assert finding.severity is Severity.OK and finding.observed == 0


@pytest.mark.parametrize("name", FORMATS)
def test_one_statement_in_each_of_thirty_requests_is_none(tmp_path: Path, name: str) -> None:
    """The same statement 30 times, once in each of 30 requests: no N+1."""
    log = tmp_path / "app.log"
    _write(log, FORMATS[name][0],
           [(f"8f1b2c3d-0000-4000-8000-0000000001{i:02d}", i, "orders") for i in range(30)])
    finding = _n_plus_one(log)
    assert finding.severity is Severity.OK and finding.observed == 0


def test_requests_beyond_the_live_limit_are_summarised_not_lost() -> None:
    """With room for 16 open requests, 10,000 one-statement requests around an N+1
    request (its statements 10 requests apart) neither hide it nor count as repeats."""
    counter = StatementCounter(max_live=16)

    def add(request: str, n: int) -> None:
        text = f"sqlalchemy.engine.Engine {_sa('orders', str(n))} request_id={request}"
        counter.add(Record("app.log", n, text, text))

    for i in range(10_000):
        add(f"one-{i}", i)
        if i < 300 and i % 10 == 0:
            add("loop-1", i)
    [found] = counter.repeated(10)
    assert (found.worst_request, found.worst_count, found.requests) == ("loop-1", 30, 1)
    assert found.example_requests == ("loop-1",)
