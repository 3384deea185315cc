"""Which backend a DSN names, and the file path of a SQLite one.

SQLite DSNs follow the SQLAlchemy convention: `sqlite:///relative.db`,
`sqlite:////absolute/path.db`; `sqlite::memory:` and a bare `sqlite:path.db` work too.
"""

from __future__ import annotations

__all__ = ["is_sqlite", "sqlite_path"]


def is_sqlite(dsn: str) -> bool:
    return dsn.startswith("sqlite:")


def sqlite_path(dsn: str) -> str:
    """The file path of a `sqlite:` DSN (ValueError for other schemes)."""
    if not is_sqlite(dsn):
        raise ValueError(f"not a sqlite DSN: {dsn!r}")
    rest = dsn.removeprefix("sqlite:")
    return rest.removeprefix("///") if rest.startswith("///") else rest.removeprefix("//")
