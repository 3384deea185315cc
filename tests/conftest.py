"""Shared fixtures: factories for throwaway PostgreSQL and Redis servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stackmedic import redact
from tests.fixtures.postgres import PostgresServer, bindir
from tests.fixtures.redis import RedisServer


@pytest.fixture(autouse=True)
def _private_state_home(tmp_path_factory: pytest.TempPathFactory,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`stackmedic doctor` run by a test keeps its history in a temp dir, not ~/.local."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Each test starts with no registered secrets, so redaction tests stay independent."""
    redact.forget_secrets()
    yield
    redact.forget_secrets()


@pytest.fixture
def pg_factory() -> Iterator[Callable[..., PostgresServer]]:
    """Start throwaway clusters (`pg_factory(settings={...})`); all destroyed at the end."""
    if bindir() is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    servers: list[PostgresServer] = []

    def start(**kwargs: Any) -> PostgresServer:
        server = PostgresServer(**kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.destroy()


@pytest.fixture(scope="session")
def pg_shared() -> Iterator[PostgresServer]:
    """One cluster for tests that only read or create their own objects."""
    if bindir() is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    server = PostgresServer()
    yield server
    server.destroy()


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """Start throwaway redis-servers (`redis_factory("--maxmemory", "2mb")`)."""
    servers: list[RedisServer] = []

    def start(*options: str) -> RedisServer:
        server = RedisServer(*options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.destroy()
