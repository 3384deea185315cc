"""Knowing time, level and message of a log line without configuration.

`detect` samples a file's first lines and picks the header layout most of them
follow: JSON lines (structlog, loguru, ECS keys), logfmt, ISO-timestamped
(Python logging, log4j/logback, Go), syslog, Apache/nginx access and nginx error
logs, uvicorn/gunicorn (`INFO:     …`), or *plain* (each line is the message).
`records` then joins continuation lines — Python tracebacks, Java stack traces,
Go panics — to the header line they belong to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["LAYOUTS", "PLAIN", "Layout", "Record", "detect", "first_value", "normalise_level",
           "parse_time", "records"]

_LEVELS = {
    "trace": "debug", "debug": "debug", "dbg": "debug", "info": "info", "information": "info",
    "notice": "info", "warn": "warning", "warning": "warning", "err": "error", "error": "error",
    "severe": "error", "crit": "critical", "critical": "critical", "fatal": "critical",
    "alert": "critical", "emerg": "critical", "panic": "critical", "log": "info",
}
# A level word inside the message when the header has none (PostgreSQL: `[42] FATAL:  …`).
_INNER_LEVEL = re.compile(r"\b(LOG|FATAL|ERROR|WARNING|PANIC|NOTICE|INFO|DEBUG)\d?:\s")
# Tokens a level may follow at the start of a message: `[thread]`, `[pid]`, a bare pid,
# `-`/`---`/`|` separators (gunicorn `[42] [ERROR]`, log4j `[main] ERROR`, Python's
# `%(asctime)s - %(name)s - %(levelname)s - …`).
_BEFORE_LEVEL = re.compile(r"^(?:\[[^\]]*\]|\d+|[-|:]+)$")
_LEVEL_WORD = r"(?i:TRACE|DEBUG|INFO|NOTICE|WARN(?:ING)?|ERROR|ERR|SEVERE|CRIT(?:ICAL)?|FATAL)"
ERROR_LEVELS = frozenset({"error", "critical"})
_TIME_KEYS = ("timestamp", "time", "@timestamp", "ts", "asctime", "datetime", "t")
_LEVEL_KEYS = ("level", "levelname", "severity", "log.level", "lvl", "loglevel")
_MESSAGE_KEYS = ("message", "msg", "event", "text", "record.message")
_REQUEST_KEYS = ("request_id", "requestId", "req_id", "trace_id", "traceId", "trace.id",
                 "correlation_id", "correlationId", "x-request-id", "x_request_id",
                 "http.request.id", "transaction.id", "named_tags.request_id")


@dataclass(slots=True)
class Record:
    """One log record: its header fields and message (continuation lines included)."""

    path: str
    line: int
    raw: str
    message: str
    time: datetime | None = None
    level: str | None = None
    request_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def is_error(self) -> bool:
        return self.level in ERROR_LEVELS


Parser = Callable[[str], Record | None]


@dataclass(frozen=True)
class Layout:
    """A header layout: a name and a parser returning None for non-header lines."""

    name: str
    parse: Parser


def normalise_level(value: object) -> str | None:
    """`WARN`, `warning`, `E`… as one of debug/info/warning/error/critical."""
    if isinstance(value, int):  # pino/bunyan numeric levels
        return "critical" if value >= 60 else "error" if value >= 50 else \
            "warning" if value >= 40 else "info" if value >= 30 else "debug"
    if not isinstance(value, str):
        return None
    return _LEVELS.get(value.strip().lower())


def parse_time(value: object) -> datetime | None:
    """A timestamp in any common shape, as an aware UTC datetime (None if unknown)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and 0 < value < 1e13:
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    if not isinstance(value, str):
        return None
    text = value.strip().replace(",", ".").replace("/", "-")
    for candidate in (text, text.replace("Z", "+00:00")):
        try:
            parsed = datetime.fromisoformat(candidate)
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError):  # overflow: year 1 or 9999 with an offset
            pass
    # Syslog has no year: assume the current one (parsed with it, so Feb 29 is valid).
    year = datetime.now(UTC).year
    for fmt, prefix in (("%d-%b-%Y:%H:%M:%S %z", ""), ("%Y %b %d %H:%M:%S", f"{year} "),
                        ("%Y-%m-%d %H:%M:%S.%f%z", "")):
        try:
            parsed = datetime.strptime(prefix + text, fmt)
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else \
                parsed.astimezone(UTC)
        except (ValueError, OverflowError):  # Feb 29 in a non-leap year, year 1 + offset
            continue
    return None


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    if dotted in data:
        return data[dotted]
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def first_value(data: Mapping[str, Any], keys: Iterable[str]) -> Any:
    """The first non-empty value of `keys` in `data` (dotted keys reach into objects)."""
    for key in keys:
        value = _lookup(data, key)
        if value not in (None, ""):
            return value
    return None


def _from_mapping(line: str, data: Mapping[str, Any]) -> Record:
    message = first_value(data, _MESSAGE_KEYS)
    request = first_value(data, _REQUEST_KEYS)
    return Record("", 0, line, str(message) if message is not None else line,
                  parse_time(first_value(data, _TIME_KEYS)),
                  normalise_level(first_value(data, _LEVEL_KEYS)),
                  str(request) if request is not None else None,
                  dict(list(data.items())[:30]))


def _parse_json(line: str) -> Record | None:
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return _from_mapping(line, data) if isinstance(data, dict) else None


_LOGFMT_PAIR = re.compile(r'([\w.@-]+)=("(?:[^"\\]|\\.)*"|\S*)')


def _parse_logfmt(line: str) -> Record | None:
    pairs = _LOGFMT_PAIR.findall(line)
    if len(pairs) < 2:
        return None
    data = {k: (v[1:-1].replace('\\"', '"') if v.startswith('"') else v) for k, v in pairs}
    if first_value(data, _LEVEL_KEYS) is None and first_value(data, _MESSAGE_KEYS) is None:
        return None
    return _from_mapping(line, data)


# The status of an access line inside an application log (`"GET / HTTP/1.1" 500`).
_ACCESS_STATUS = re.compile(r'"[A-Z]+ \S+ HTTP/[0-9.]+" ([1-5][0-9][0-9])\b')


def _leading_level(message: str) -> str | None:
    """The level word among the first tokens of a message whose header put it after
    a thread, pid or logger name: `[42] [ERROR] …`, `[main] ERROR …`, `- app.db -
    ERROR - …`. Only bracketed words or upper-case words count, and only after tokens
    that cannot be message text, so `app: ERROR count is 3` has no level."""
    tokens = message.split(None, 8)[:8]
    for i, token in enumerate(tokens):
        bracketed = token.startswith("[") and token.endswith("]")
        word = token.strip("[]:") if bracketed else token.rstrip(":")
        if (bracketed or word.isupper()) and (level := normalise_level(word)) is not None:
            return level
        if _BEFORE_LEVEL.match(token) or (i + 1 < len(tokens) and tokens[i + 1] == "-"):
            continue
        return None
    return None


def _regex_layout(pattern: str, *, level_from_status: bool = False) -> Parser:
    compiled = re.compile(pattern)

    def parse_line(line: str) -> Record | None:
        match = compiled.match(line)
        if match is None:
            return None
        groups = match.groupdict()
        level = normalise_level(groups.get("level"))
        message = groups.get("message") or line
        if level is None and (inner := _INNER_LEVEL.search(message, 0, 80)):
            level = normalise_level(inner.group(1))
        if level is None:
            level = _leading_level(message)
        status = groups.get("status") if level_from_status else None
        if status is None and level == "info" and (access := _ACCESS_STATUS.search(message)):
            status = access.group(1)  # uvicorn logs every response at INFO, 5xx too
        if status:
            code = int(status)
            level = "error" if code >= 500 else "warning" if code >= 400 else "info"
        fields = {k: v for k, v in groups.items() if v is not None and k not in
                  ("time", "level", "message")}
        return Record("", 0, line, message, parse_time(groups.get("time")),
                      level, groups.get("request_id"), fields)

    return parse_line


_ZONE = r"(?:UTC|GMT|CES?T|EES?T|WES?T|[ECMP][SD]T|BST|IST|JST|AE[SD]T)"
_ISO = r"\d{4}[-/]\d\d[-/]\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?: ?(?:Z|[+-]\d\d:?\d\d))?"
LAYOUTS: tuple[Layout, ...] = (
    Layout("json", _parse_json),
    Layout("nginx-error", _regex_layout(
        r"^(?P<time>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(?P<level>\w+)\] \d+#\d+: "
        r"(?:\*\d+ )?(?P<message>.*)$")),
    Layout("iso", _regex_layout(
        rf"^\[?(?P<time>{_ISO})(?: {_ZONE})?\]?\s+(?:\[?(?P<level>{_LEVEL_WORD})\]?\s*[:\-|]?\s+)?"
        rf"(?P<message>.*)$")),
    Layout("access", _regex_layout(
        r'^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] (?P<message>"(?P<request>[^"]*)" '
        r"(?P<status>\d{3}) .*)$", level_from_status=True)),
    Layout("syslog", _regex_layout(
        r"^(?P<time>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?P<host>\S+) "
        r"(?P<program>[^\s:\[]+)(?:\[(?P<pid>\d+)\])?: (?P<message>.*)$")),
    Layout("uvicorn", _regex_layout(rf"^(?P<level>{_LEVEL_WORD}):\s+(?P<message>.*)$")),
    Layout("level-first", _regex_layout(
        rf"^\[?(?P<level>{_LEVEL_WORD})\]?[\s:]+(?:\[?(?P<time>{_ISO})\]?\s+)?(?P<message>.*)$")),
    Layout("logfmt", _parse_logfmt),
)
PLAIN = Layout("plain", lambda line: None)


def detect(sample: Iterable[str], *, minimum: float = 0.3) -> Layout:
    """The layout the first non-blank line follows and the most sample lines follow,
    if at least `minimum` of them do (continuation lines of tracebacks are the rest);
    else plain."""
    lines = [line for line in sample if line.strip()]
    if not lines:
        return PLAIN
    best, best_hits = PLAIN, 0
    for layout in LAYOUTS:
        if layout.parse(lines[0]) is None:
            continue
        hits = sum(1 for line in lines if layout.parse(line) is not None)
        if hits > best_hits:
            best, best_hits = layout, hits
    return best if best_hits >= minimum * len(lines) else PLAIN


# Lines that continue the record above them even without a detected header layout,
# and the exception line that ends a traceback already in progress.
_CONTINUATION = re.compile(
    r"^(?:\s|Traceback \(most recent call last\)|Caused by:|\.\.\. \d+ more|"
    r"During handling of the above|The above exception|goroutine \d+ \[|exit status \d+$|"
    r"created by |[\w./*()\-]+\.[\w*()]+\(.*\)$)")
_TRACE_END = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Exit|Interrupt)\b")


def _continues(record: Record, text: str, layout: Layout) -> bool:
    if layout is not PLAIN or not text.strip() or _CONTINUATION.match(text):
        return True
    return "\n" in record.message and _TRACE_END.match(text) is not None


def records(lines: Iterable[tuple[str, int, str]], layout: Layout, *,
            max_record: int = 64 * 1024) -> Iterator[Record]:
    """Records from `(path, line number, text)`, continuation lines joined to their
    header (a plain layout joins indented lines and stack-trace lines only)."""
    current: Record | None = None
    for path, number, text in lines:
        parsed = layout.parse(text)
        if parsed is None and current is not None and current.path == path and \
                _continues(current, text, layout):
            if len(current.message) < max_record:
                current.message += "\n" + text
                current.raw += "\n" + text
            continue
        if current is not None:
            yield _finish(current)
        current = parsed or Record(path, number, text, text)
        current.path, current.line = path, number
        if layout is not PLAIN and parsed is None:
            current.fields["unparsed"] = True
    if current is not None:
        yield _finish(current)


def _finish(record: Record) -> Record:
    record.message = record.message.rstrip()  # blank lines kept inside, not at the end
    return record
