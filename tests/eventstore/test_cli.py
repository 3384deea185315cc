"""`stackmedic events scan | lag | rebuild | tail` on a real SQLite store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from stackmedic.eventstore import NewEvent, open_store
from stackmedic.eventstore.cli import app
from stackmedic.eventstore.projections import ProjectionRunner
from tests.eventstore.helpers import CountingProjection

runner = CliRunner()


def _store(tmp_path: Path) -> str:
    dsn = f"sqlite:///{tmp_path / 'events.db'}"
    with open_store(dsn) as store:
        store.append("order-1", [NewEvent("placed", {"n": i}) for i in range(5)])
        store.append("stock-1", [NewEvent("added")])
    return dsn


def test_every_command_has_help() -> None:
    """Each events command documents itself in --help."""
    for command in ("scan", "lag", "rebuild", "tail"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "--dsn" in result.output


def test_scan_exit_codes_follow_the_verdict(tmp_path: Path) -> None:
    """A clean store exits 0; a planted gap exits 2 and names stream and position."""
    dsn = _store(tmp_path)
    assert runner.invoke(app, ["scan", "--dsn", dsn]).exit_code == 0
    with sqlite3.connect(tmp_path / "events.db") as conn:
        conn.execute("DROP INDEX es_events_stream_version")
        conn.execute("INSERT INTO es_events VALUES (9, 'x', 'order-1', 'order', 9, 'placed', "
                     "'{}', '{}', '2024-01-01T00:00:00.000000Z')")
    result = runner.invoke(app, ["scan", "--dsn", dsn, "--json"])
    assert result.exit_code == 2
    [gap] = json.loads(result.output)["samples"]["version_gap"]
    assert (gap["stream"], gap["position"]) == ("order-1", 9)


def test_lag_reports_stalled_projection(tmp_path: Path) -> None:
    """`events lag` prints a never-run projection as stalled and exits 2."""
    result = runner.invoke(app, ["lag", "--dsn", _store(tmp_path), "--projection", "nope"])
    assert result.exit_code == 2 and result.output.startswith("stalled")


def test_rebuild_and_tail(tmp_path: Path) -> None:
    """`events rebuild` replays into the projection; `events tail` prints JSON lines."""
    dsn = _store(tmp_path)
    with open_store(dsn) as store:
        ProjectionRunner(store, CountingProjection()).run_until_idle()
    result = runner.invoke(app, ["rebuild", "--dsn", dsn, "--projection",
                                 "tests.eventstore.helpers:CountingProjection"])
    assert result.exit_code == 0, result.output
    assert "rebuilt counting: 6 events" in result.output
    lines = runner.invoke(app, ["tail", "--dsn", dsn, "--category", "order", "--after", "3"])
    assert [json.loads(line)["position"] for line in lines.output.splitlines()] == [4, 5]


def test_errors_are_one_line_and_exit_3(tmp_path: Path) -> None:
    """A missing database file exits 3 with a one-line reason."""
    result = runner.invoke(app, ["lag", "--dsn", f"sqlite:///{tmp_path / 'none.db'}"])
    assert result.exit_code == 3 and len(result.output.strip().splitlines()) == 1
