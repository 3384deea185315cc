"""Fixtures of the postgres tests: a server per module, client sessions, replicas."""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from stackmedic.doctor import Run
from stackmedic.history import History
from stackmedic.testing import run_components
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import PostgresServer, bindir

psycopg = pytest.importorskip("psycopg")


def wait_for(predicate: Callable[[], Any], what: str, limit: float = 30.0) -> Any:
    """Poll until `predicate()` is truthy (a generous limit: this is not a timing test)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


def doctor(dsn: str, thresholds: Mapping[str, Mapping[str, float]] | None = None,
           history: History | None = None, **options: Any) -> Run:
    """Run the doctor over one postgres component named `db`."""
    spec = {"kind": "postgres", "dsn": dsn, **options}
    if thresholds:
        spec["thresholds"] = thresholds
    return run_components({"db": spec}, history=history)


class Sessions:
    """Client sessions a test opens to induce a fault; all closed at teardown."""

    def __init__(self) -> None:
        self.conns: list[Any] = []
        self.threads: list[threading.Thread] = []

    def open(self, dsn: str, app: str = "test-client", autocommit: bool = True) -> Any:
        conn = psycopg.connect(dsn, application_name=app, autocommit=autocommit)
        self.conns.append(conn)
        return conn

    def background(self, conn: Any, sql: str) -> threading.Thread:
        """Run `sql` on `conn` in a thread (it may block); errors are ignored."""

        def target() -> None:
            with contextlib.suppress(psycopg.Error):
                conn.execute(sql)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(psycopg.Error):
                conn.cancel()
            conn.close()
        for thread in self.threads:
            thread.join(10)


@pytest.fixture
def sessions() -> Iterator[Sessions]:
    """Open client sessions, closed (and their threads joined) after the test."""
    opened = Sessions()
    yield opened
    opened.close()


def _server(**kwargs: Any) -> Iterator[PostgresServer]:
    if bindir() is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    server = PostgresServer(**kwargs)
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def pg_busy() -> Iterator[PostgresServer]:
    """A small server for session faults: 20 connections, fast deadlock detection,
    two-phase commit allowed."""
    yield from _server(settings={"max_connections": "20", "superuser_reserved_connections": "3",
                                 "deadlock_timeout": "100ms", "max_prepared_transactions": "2"})


@pytest.fixture(scope="module")
def pg_stats() -> Iterator[PostgresServer]:
    """A server with pg_stat_statements preloaded; tests create their own database."""
    yield from _server(settings={"shared_preload_libraries": "pg_stat_statements"})


def new_database(server: PostgresServer, name: str, sql: str = "") -> str:
    """Create database `name` on `server`, run `sql` in it, return its DSN."""
    server.psql(f"CREATE DATABASE {name}")
    if sql:
        server.psql(sql, dbname=name)
    return server.dsn(dbname=name)


class Replica(PostgresServer):
    """A streaming standby of `primary`, cloned with pg_basebackup."""

    def __init__(self, primary: PostgresServer) -> None:  # no initdb: the clone is the data
        self.bin = primary.bin
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="stackmedic-pg-replica-"))
        self.data = self.dir / "data"
        self.settings = {**primary.settings, "unix_socket_directories": str(self.dir)}
        pw = pwd.getpwnam("postgres")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run([str(self.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
                   "-U", "postgres", "-D", str(self.data), "-R", "-X", "stream", "--no-sync",
                   "--checkpoint=fast"])
        self.start()


@pytest.fixture
def replica_of() -> Iterator[Callable[[PostgresServer], Replica]]:
    """Clone standbys of a primary; destroyed after the test."""
    made: list[Replica] = []

    def make(primary: PostgresServer) -> Replica:
        made.append(Replica(primary))
        return made[-1]

    yield make
    for replica in made:
        replica.destroy()


def pgbench(server: PostgresServer, *args: str) -> subprocess.Popen[str]:
    """Start pgbench as the postgres OS user against `server` over its unix socket."""
    return subprocess.Popen(["runuser", "-u", "postgres", "--", str(server.bin / "pgbench"),
                             "-h", str(server.dir), "-p", str(server.port), *args, "postgres"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
