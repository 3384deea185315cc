"""Which backend a DSN names, and the file path of a SQLite one.

SQLite DSNs follow the SQLAlchemy convention: `sqlite:///relative.db`,
`sqlite:////absolute/path.db`; `sqlite::memory:` and a bare `sqlite:path.db` work too.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["command_dsn", "is_sqlite", "sqlite_path"]

_KV_PASSWORD = re.compile(r"\s*\bpassword\s*=\s*(?:'(?:[^'\\]|\\.)*'|\S+)")


def is_sqlite(dsn: str) -> bool:
    return dsn.startswith("sqlite:")


def sqlite_path(dsn: str) -> str:
    """The file path of a `sqlite:` DSN (ValueError for other schemes)."""
    if not is_sqlite(dsn):
        raise ValueError(f"not a sqlite DSN: {dsn!r}")
    rest = dsn.removeprefix("sqlite:")
    return rest.removeprefix("///") if rest.startswith("///") else rest.removeprefix("//")


def command_dsn(dsn: str) -> str:
    """`dsn` as a runbook command can use it from the operator's shell: a SQLite path made
    absolute (the shell is not in the doctor's directory) and a PostgreSQL password left
    out, so libpq takes it from PGPASSWORD or ~/.pgpass; a redacted DSN would send the
    mask `***` as the password and fail."""
    if is_sqlite(dsn):
        path = sqlite_path(dsn)
        return dsn if path in ("", ":memory:") else "sqlite:///" + str(Path(path).resolve())
    if "://" not in dsn:  # key=value form
        return _KV_PASSWORD.sub("", dsn).strip()
    parts = urlsplit(dsn)
    netloc = parts.netloc.rpartition("@")
    userinfo = netloc[0].partition(":")[0]
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "password"])
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{netloc[2]}" if userinfo
                                     else netloc[2], query=query))
