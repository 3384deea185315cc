"""Event store fixtures: a fresh store DSN per test on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.postgres import PostgresServer


def fresh_pg_dsn(server: PostgresServer) -> str:
    """A new empty database on the throwaway cluster."""
    name = f"es_{uuid.uuid4().hex[:12]}"
    server.psql(f"CREATE DATABASE {name}")
    return server.dsn(dbname=name)


@pytest.fixture(params=["sqlite", "postgres"])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A DSN of an empty store, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
    else:
        yield fresh_pg_dsn(request.getfixturevalue("pg_shared"))


@pytest.fixture
def pg_dsn(pg_shared: PostgresServer) -> str:
    """A DSN of an empty PostgreSQL database."""
    return fresh_pg_dsn(pg_shared)
