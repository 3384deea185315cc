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
    change = since_last_run({**second.facts["db"]["facts"],
                             "since": {**since, "until": (datetime.fromisoformat(since["at"])
                                                          + timedelta(seconds=300)).isoformat()}},
                            "deadlocks")
    assert change is not None and (change.delta, change.seconds) == (5, 300)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["entries"]["db/facts"]["counters"]["deadlocks"] == 9


def test_restarted_or_reset_counters_are_not_compared() -> None:
    """Another epoch (restart, stats reset), a counter that went backwards, or a
    missing value give no change instead of a negative or bogus one."""
    def facts(before: dict[str, object], now: dict[str, object]) -> dict[str, object]:
        return {"counters": now, "since": {"at": NOW.isoformat(), "counters": before,
                                           "until": (NOW + timedelta(minutes=5)).isoformat()}}

    assert since_last_run(facts({"epoch": "a", "n": 1}, {"epoch": "b", "n": 5}), "n") is None
    assert since_last_run(facts({"epoch": "a", "n": 7}, {"epoch": "a", "n": 5}), "n") is None
    assert since_last_run(facts({"epoch": "a"}, {"epoch": "a", "n": 5}), "n") is None
    assert since_last_run({"counters": {"n": 1}, "since": None}, "n") is None
    change = since_last_run(facts({"epoch": "a", "n": 1}, {"epoch": "a", "n": 5}), "n")
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


def test_hostile_history_content_gives_no_comparison(tmp_path: Path) -> None:
    """A previous run without a time zone, or counters that are NaN, infinite or text,
    give no change (a rule reading them must not crash or print nonsense)."""
    path = tmp_path / "h.json"
    for at, value in (("2026-11-22T08:00:00", 1), (NOW.isoformat(), "NaN"),
                      (NOW.isoformat(), "-Infinity"), (NOW.isoformat(), '"7"')):
        path.write_text(f'{{"version": 1, "entries": {{"db/facts": {{"at": "{at}", '
                        f'"counters": {{"epoch": "e", "n": {value}}}}}}}}}')
        facts: dict[str, object] = {"counters": {"epoch": "e", "n": 5}}
        History(path).exchange("db", "facts", facts, NOW + timedelta(minutes=5))
        assert since_last_run(facts, "n") is None, (at, value)


def test_a_device_fifo_or_huge_file_as_state_is_neither_read_nor_replaced(
        tmp_path: Path) -> None:
    """`--state /dev/null` (here a null device made in a temp dir) stays a device when
    the doctor runs as root, and a file over the size cap is not read."""
    null = tmp_path / "null"
    try:
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD")
    spec = {"kind": "fake", "counters": {"epoch": "e", "n": 1}}
    run_components({"db": spec}, history=History(null))
    assert stat.S_ISCHR(null.lstat().st_mode)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)  # a reader that blocks would then wait forever
    try:
        run = run_components({"db": spec}, history=History(fifo))
        assert run.facts["db"]["facts"]["since"] is None and stat.S_ISFIFO(fifo.lstat().st_mode)
    finally:
        os.close(writer)
    huge = tmp_path / "huge.json"
    entry = {"at": NOW.isoformat(), "counters": {"epoch": "e", "n": 0}}
    huge.write_text(json.dumps({"version": 1, "entries": {"db/facts": entry},
                                "padding": "x" * (2 << 20)}))
    run = run_components({"db": spec}, history=History(huge))
    assert run.facts["db"]["facts"]["since"] is None


def test_recorded_facts_replay_the_interval_between_the_runs(tmp_path: Path) -> None:
    """The facts carry this run's time (`since.until`): evaluating them again later, as
    `--record` replay does, measures the same interval, not one up to the replay."""
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"version": 1, "entries": {"db/facts": {
        "at": "2020-01-01T00:00:00+00:00", "counters": {"epoch": "e", "n": 0}}}}))
    run = run_components({"db": {"kind": "fake", "counters": {"epoch": "e", "n": 2}}},
                         history=History(path))
    recorded = json.loads(json.dumps(run.facts["db"]["facts"]))
    until = datetime.fromisoformat(recorded["since"]["until"])
    change = since_last_run(recorded, "n")
    assert change is not None
    assert change.seconds == (until - datetime(2020, 1, 1, tzinfo=UTC)).total_seconds()


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
