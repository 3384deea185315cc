"""N+1 queries: the same SQL statement template repeated within one request.

Statements come from PostgreSQL statement logging (`log_statement`,
`log_min_duration_statement`: `LOG:  duration: 0.1 ms  statement: SELECT …`) and
SQLAlchemy echo (`sqlalchemy.engine.Engine SELECT …`). The request is the record's
request/trace id (JSON and logfmt logs) or a `request_id=`/`trace_id=`-style pair
in the line. Literals and bind parameters become `?`, so `WHERE id = 7` and
`WHERE id = 8` are one template.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass

from stackmedic.logs.formats import Record

__all__ = ["NPlusOne", "StatementCounter", "sql_of", "sql_template"]

# SQLAlchemy echo prints a statement over several lines (`SELECT …` / `FROM …` /
# `WHERE …`), joined into one record by the reader: the whole record is the SQL.
# Python's default format puts a colon after the logger name (`INFO:sqlalchemy…:SELECT`).
_STATEMENT = re.compile(
    r"(?:(?:statement|execute [^:]*):\s+|sqlalchemy\.engine(?:\.Engine|\.base\.Engine)?[\s:]+)"
    r"(?P<sql>(?:SELECT|INSERT|UPDATE|DELETE|WITH)\b.*)", re.IGNORECASE | re.DOTALL)
_REQUEST = re.compile(
    r"\b(?:request[_-]?id|trace[_-]?id|req[_-]?id|correlation[_-]?id|x-request-id)"
    r"[=:]\s*\"?(?P<id>[A-Za-z0-9_.:\-]{3,80})", re.IGNORECASE)
_LITERALS = re.compile(
    r"'(?:[^']|'')*'|\$\d+|%\(\w+\)s|%s|:\w+|\?|\b\d+(?:\.\d+)?\b", re.IGNORECASE)
_IN_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class NPlusOne:
    """One statement template repeated in requests: the worst request and the spread."""

    template: str
    worst_request: str
    worst_count: int
    requests: int
    example: str


def sql_of(record: Record) -> str | None:
    """The SQL statement a record logs, or None."""
    match = _STATEMENT.search(record.message)
    return match["sql"].strip() if match else None


def sql_template(sql: str) -> str:
    """`sql` with literals and parameters as `?`, IN lists as `(?)`, spaces collapsed."""
    text = _LITERALS.sub("?", sql)
    text = _IN_LIST.sub("(?)", text)
    return _SPACE.sub(" ", text).strip().rstrip(";")


def request_of(record: Record) -> str | None:
    if record.request_id:
        return record.request_id
    match = _REQUEST.search(record.raw)
    return match["id"] if match else None


class StatementCounter:
    """Counts statement templates per request as records stream past."""

    def __init__(self) -> None:
        self._counts: dict[str, Counter[str]] = defaultdict(Counter)
        self._examples: dict[str, str] = {}

    def add(self, record: Record) -> None:
        sql = sql_of(record)
        if sql is None:
            return
        request = request_of(record)
        if request is None:
            return
        template = sql_template(sql)
        self._counts[template][request] += 1
        self._examples.setdefault(template, sql[:500])

    def repeated(self, minimum: int) -> list[NPlusOne]:
        """Templates repeated at least `minimum` times in some request, worst first."""
        out = []
        for template, per_request in self._counts.items():
            repeated = {r: c for r, c in per_request.items() if c >= minimum}
            if repeated:
                worst = max(repeated, key=lambda r: repeated[r])
                out.append(NPlusOne(template, worst, repeated[worst], len(repeated),
                                    self._examples[template]))
        return sorted(out, key=lambda n: -n.worst_count)

