"""The event store runbooks' commands run as filled in, from the operator's shell: the
DSN they carry holds no masked password and no path relative to the doctor's directory."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from stackmedic.eventstore import NewEvent, open_store
from stackmedic.eventstore._dsn import is_sqlite
from stackmedic.findings import Finding, Severity
from stackmedic.testing import run_components, with_symptom
from tests.eventstore.test_version_gap_remedy import _execute
from tests.fixtures.postgres import PostgresServer

_STACKMEDIC = str(Path(sys.executable).parent / "stackmedic")
_PROJECTION = "tests.eventstore.helpers:CountingProjection"


def _checkpoint_ahead(dsn: str) -> None:
    """Two events, and the `counting` projection's checkpoint at 5, past the head (a
    restore of the events from an older backup than the projections)."""
    with open_store(dsn) as store:
        store.append("order-1", [NewEvent("placed"), NewEvent("paid")])
        with store.transaction() as tx:
            store.save_checkpoint(tx, "counting", 5)


def _rebuild_command(dsn: str) -> str:
    """The rebuild command of the doctor's checkpoint-ahead remedy, for our projection."""
    [ahead] = with_symptom(run_components({"events": {"kind": "eventstore", "dsn": dsn}})
                           .findings, "eventstore.checkpoint.ahead")
    assert ahead.remedy is not None
    [command] = [line.strip() for step in ahead.remedy.steps for line in step.splitlines()
                 if line.strip().startswith("stackmedic events rebuild")]
    return command.replace("module:ProjectionClass", _PROJECTION)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_rebuild_command_of_the_remedy_runs_as_filled_in(
        backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        pg_factory: Callable[..., PostgresServer]) -> None:
    """A store reached by a relative SQLite path, or by a DSN with a password (scram
    auth), gets a remedy whose rebuild command works from another directory with the
    password in PGPASSWORD, and moves the checkpoint back within the log."""
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    if backend == "sqlite":
        (tmp_path / "app").mkdir()
        monkeypatch.chdir(tmp_path / "app")
        dsn = "sqlite:///./events.db"
    else:
        server = pg_factory(password="s3cret-pw")
        server.psql("CREATE DATABASE events")
        dsn = server.dsn(dbname="events", password="s3cret-pw")
        env["PGPASSWORD"] = "s3cret-pw"
    _checkpoint_ahead(dsn)
    command = _rebuild_command(dsn)
    assert "***" not in command
    result = subprocess.run([_STACKMEDIC, *shlex.split(command)[1:]], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    with open_store(dsn) as store:
        checkpoint = store.checkpoint("counting")
        assert checkpoint is not None and checkpoint.position == store.head() == 2


def test_the_event_id_index_is_restored_by_the_suggested_command(dsn: str) -> None:
    """With the event-id index dropped and an event stored twice, the remedy's CREATE
    UNIQUE INDEX is in the backend's syntax, on the scanned table; once the copy is gone
    it runs as given and the scan then trusts the index."""
    with open_store(dsn) as store:
        store.append("order-1", [NewEvent("placed"), NewEvent("paid")])
    _execute(dsn, "DROP INDEX es_events_event_id",
             "INSERT INTO es_events SELECT 50, event_id, stream, category, 9, type, data, "
             "metadata, occurred_at FROM es_events WHERE position = 1")
    [duplicate] = _findings(dsn, "eventstore.duplicate_event")
    assert duplicate.remedy is not None
    [create] = [line.strip() for step in duplicate.remedy.steps for line in step.splitlines()
                if line.strip().startswith("CREATE UNIQUE INDEX")]
    assert ("CONCURRENTLY" in create) is not is_sqlite(dsn)
    bypass = () if is_sqlite(dsn) else ("SET session_replication_role = replica",)
    _execute(dsn, *bypass, "DELETE FROM es_events WHERE position = 50")
    _execute(dsn, create)
    [guarded] = _findings(dsn, "eventstore.duplicate_event")
    assert guarded.severity is Severity.OK
    assert "es_events_event_id" in guarded.evidence["skipped"]["duplicate_event_id"]


def test_the_sqlite_wal_checkpoint_runs_on_the_store_file(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """A slow SQLite store (threshold 0 s) gets the SQLite steps only, and the
    sqlite3 command empties the WAL of the store's own file, from any directory."""
    (tmp_path / "app").mkdir()
    monkeypatch.chdir(tmp_path / "app")
    dsn = "sqlite:///./events.db"
    with open_store(dsn) as store:
        store.append("order-1", [NewEvent("placed")])
        [slow] = _findings(dsn, "eventstore.latency.high",
                           {"eventstore.latency.high": {"warning": 0.0, "critical": None}})
        assert slow.remedy is not None
        assert "VACUUM (ANALYZE)" not in "\n".join(slow.remedy.steps)
        [command] = [line.strip() for step in slow.remedy.steps
                     for line in step.splitlines() if line.strip().startswith("sqlite3 ")]
        store.conn.execute("PRAGMA wal_autocheckpoint=0")
        store.append("order-1", [NewEvent("paid")])
        wal = tmp_path / "app" / "events.db-wal"
        assert wal.stat().st_size > 0
        subprocess.run(command, shell=True, cwd=tmp_path, check=True, timeout=30)
        assert wal.stat().st_size == 0


def _findings(dsn: str, symptom: str,
              thresholds: dict[str, dict[str, float | None]] | None = None) -> list[Finding]:
    return with_symptom(run_components({"events": {"kind": "eventstore", "dsn": dsn}},
                                       thresholds=thresholds).findings, symptom)
