"""`stackmedic events scan | lag | rebuild | tail` on a real SQLite store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stackmedic.eventstore import NewEvent, open_store
from stackmedic.eventstore.cli import app
from stackmedic.eventstore.projections import ProjectionRunner
from stackmedic.eventstore.rebuild import rebuild
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


def test_lag_reports_a_checkpoint_beyond_the_head_as_ahead(tmp_path: Path) -> None:
    """`events lag` prints a checkpoint past the head as ahead (exit 2), not healthy."""
    dsn = _store(tmp_path)
    with open_store(dsn) as store, store.transaction() as tx:
        store.save_checkpoint(tx, "orders", 99)
    result = runner.invoke(app, ["lag", "--dsn", dsn])
    assert result.exit_code == 2 and result.output.startswith("ahead")
    assert "beyond the head 6" in result.output


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


def test_tail_of_a_stream_or_category_reads_a_page_at_a_time(tmp_path: Path) -> None:
    """`tail --stream`/`--category` print their last --limit events (not the whole
    stream, nor only those among the log's last positions), and page with --after."""
    dsn = _store(tmp_path)
    with open_store(dsn) as store:
        store.append("stock-1", [NewEvent("added") for _ in range(30)])
    lines = runner.invoke(app, ["tail", "--dsn", dsn, "--stream", "order-1", "--limit", "2"])
    assert [json.loads(line)["version"] for line in lines.output.splitlines()] == [4, 5]
    lines = runner.invoke(app, ["tail", "--dsn", dsn, "--stream", "stock-1", "--after", "0",
                                "--limit", "3"])
    assert [json.loads(line)["version"] for line in lines.output.splitlines()] == [1, 2, 3]
    lines = runner.invoke(app, ["tail", "--dsn", dsn, "--category", "order", "--limit", "2"])
    assert [json.loads(line)["position"] for line in lines.output.splitlines()] == [4, 5]


def test_batch_and_page_sizes_below_one_are_refused(tmp_path: Path) -> None:
    """--batch-size 0 would reset the projection and replay nothing yet report success;
    a negative --limit is no limit at all on SQLite: both are usage errors."""
    dsn = _store(tmp_path)
    result = runner.invoke(app, ["rebuild", "--dsn", dsn, "--projection",
                                 "tests.eventstore.helpers:CountingProjection",
                                 "--batch-size", "0"])
    assert result.exit_code == 2 and "rebuilt" not in result.output
    with open_store(dsn) as store:
        assert store.checkpoint("counting") is None  # nothing was touched
        with pytest.raises(ValueError, match="batch_size"):
            ProjectionRunner(store, CountingProjection(), batch_size=0)
        ProjectionRunner(store, CountingProjection()).run_until_idle()
        with pytest.raises(ValueError):  # refused before the projection is reset
            rebuild(store, CountingProjection(), batch_size=0)
        with store.transaction() as tx:
            assert len(CountingProjection().counts(tx)) == 6
    assert runner.invoke(app, ["tail", "--dsn", dsn, "--limit", "-1"]).exit_code == 2


def test_rebuild_of_a_mistyped_store_fails_without_creating_it(tmp_path: Path) -> None:
    """A DSN naming no store exits 3; it does not create an empty one and report success."""
    missing = tmp_path / "typo.db"
    result = runner.invoke(app, ["rebuild", "--dsn", f"sqlite:///{missing}", "--projection",
                                 "tests.eventstore.helpers:CountingProjection"])
    assert result.exit_code == 3 and "rebuilt" not in result.output
    assert not missing.exists()
