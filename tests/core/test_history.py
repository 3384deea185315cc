"""The run-to-run history of counters: exchange, epochs, bad files, the CLI options."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from stackmedic.history import History, default_history_path, since_last_run
from stackmedic.testing import run_components
from tests.core.test_cli import run_cli

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def test_a_second_run_sees_the_first_runs_counters(tmp_path: Path) -> None:
    """Counters a collector reports come back as `since` on the next run (and only
    then), and the file is private to its owner."""
    path = tmp_path / "h.json"
    spec = {"kind": "fake", "counters": {"epoch": "boot-1", "deadlocks": 4}}
    first = run_components({"db": spec}, history=History(path))
    assert first.facts["db"]["facts"]["since"] is None
    spec["counters"] = {"epoch": "boot-1", "deadlocks": 9}
    second = run_components({"db": spec}, history=History(path))
    since = second.facts["db"]["facts"]["since"]
    assert since["counters"] == {"epoch": "boot-1", "deadlocks": 4}
    change = since_last_run(second.facts["db"]["facts"], "deadlocks",
                            datetime.fromisoformat(since["at"]) + timedelta(seconds=300))
    assert change is not None and (change.delta, change.seconds) == (5, 300)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["entries"]["db/facts"]["counters"]["deadlocks"] == 9


def test_restarted_or_reset_counters_are_not_compared() -> None:
    """Another epoch (restart, stats reset), a counter that went backwards, or a
    missing value give no change instead of a negative or bogus one."""
    def facts(before: dict[str, object], now: dict[str, object]) -> dict[str, object]:
        return {"counters": now, "since": {"at": NOW.isoformat(), "counters": before}}

    later = NOW + timedelta(minutes=5)
    assert since_last_run(facts({"epoch": "a", "n": 1}, {"epoch": "b", "n": 5}), "n",
                          later) is None
    assert since_last_run(facts({"epoch": "a", "n": 7}, {"epoch": "a", "n": 5}), "n",
                          later) is None
    assert since_last_run(facts({"epoch": "a"}, {"epoch": "a", "n": 5}), "n", later) is None
    assert since_last_run({"counters": {"n": 1}, "since": None}, "n", later) is None
    change = since_last_run(facts({"epoch": "a", "n": 1}, {"epoch": "a", "n": 5}), "n",
                            later)
    assert change is not None and change.delta == 4


def test_a_corrupt_or_unwritable_history_costs_only_the_comparison(tmp_path: Path) -> None:
    """Garbage, another version or a directory in the way: the run goes on with no
    history, and the file is replaced when it can be."""
    spec = {"kind": "fake", "counters": {"epoch": "e", "n": 1}}
    for garbage in ("{not json", '{"version": 99, "entries": {}}', "[1, 2]", "\xff"):
        path = tmp_path / "h.json"
        path.write_text(garbage, encoding="latin-1")
        run = run_components({"db": spec}, history=History(path))
        assert run.facts["db"]["facts"]["since"] is None
        assert json.loads(path.read_text())["version"] == 1
    blocked = tmp_path / "file" / "h.json"
    (tmp_path / "file").write_text("a file where the directory should be")
    run = run_components({"db": spec}, history=History(blocked))
    assert run.findings and not blocked.exists()


def test_the_default_path_is_per_stack_file_under_xdg_state_home(tmp_path: Path) -> None:
    os.environ["XDG_STATE_HOME"] = str(tmp_path)  # the autouse fixture restores it
    one = default_history_path(str(tmp_path / "a.yaml"), "shop prod")
    other = default_history_path(str(tmp_path / "b.yaml"), "shop prod")
    assert one.parent == tmp_path / "stackmedic" and one.name.startswith("shop-prod-")
    assert one != other
    assert default_history_path("<discovered>", "vm") == default_history_path(
        "<discovered>", "vm")


def test_the_cli_keeps_history_unless_told_not_to(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`doctor` writes the history where --state says (or under XDG_STATE_HOME), and
    --no-state writes none."""
    stack = tmp_path / "stack.yaml"
    stack.write_text(yaml.safe_dump({"components": {"db": {
        "kind": "fake", "counters": {"epoch": "e", "n": 3}}}}))
    os.environ["XDG_STATE_HOME"] = str(tmp_path / "xdg")  # the autouse fixture restores it
    run_cli(capsys, "doctor", "-c", str(stack), "--no-state")
    assert not (tmp_path / "xdg").exists()
    run_cli(capsys, "doctor", "-c", str(stack), "--state", str(tmp_path / "mine.json"))
    assert json.loads((tmp_path / "mine.json").read_text())["entries"]["db/facts"]
    run_cli(capsys, "doctor", "-c", str(stack))
    assert len(list((tmp_path / "xdg" / "stackmedic").glob("stack-*.json"))) == 1
