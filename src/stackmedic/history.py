"""What the previous doctor run counted, so a check can say "N since the last run".

Servers keep cumulative counters (PostgreSQL's deadlocks per database, say) that say
nothing by themselves and, sampled twice within one run, miss everything that
happened between runs: a doctor run every five minutes would almost never see a
deadlock. A collector that puts `facts["counters"]` (numbers, plus an `epoch` string
that changes when the counters restart: a server's start time or stats reset) gets
the previous run's values back as `facts["since"]`, and rules read the difference
with `since_last_run(facts, name)`.

The history is one small JSON file per stack (counters only: no secrets, no text from
the servers), written atomically after each run. `stackmedic doctor` keeps it under
`$XDG_STATE_HOME/stackmedic/` unless told `--state FILE` or `--no-state`; the library
keeps none unless given a `History`. An unreadable or corrupt file is treated as no
history (and replaced), never as an error: it only costs the comparison.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from stackmedic.checks import Facts
from stackmedic.probes._hostfacts import read_bytes_capped

__all__ = ["CounterChange", "History", "default_history_path", "previous_counters",
           "since_last_run"]

_VERSION = 1
_MAX_BYTES = 1 << 20  # counters of a few hundred components; a bigger file is not ours


@dataclass(frozen=True)
class CounterChange:
    """How much a counter grew since the previous run, and over how long."""

    delta: float
    seconds: float
    previous_at: str  # ISO time of the previous run


class History:
    """Counters per component and collector, loaded from and saved to `path`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._entries: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        try:  # a FIFO or a device named by mistake must not block or flood the run
            raw = read_bytes_capped(str(self.path), _MAX_BYTES + 1)
            data = json.loads(raw.decode("utf-8")) if len(raw) <= _MAX_BYTES else None
        except (OSError, UnicodeDecodeError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            return {}
        entries = data.get("entries")
        return {k: v for k, v in entries.items() if isinstance(v, dict)} \
            if isinstance(entries, dict) else {}

    def exchange(self, component: str, collector: str, facts: Facts, now: datetime) -> None:
        """Put the previous run's counters into `facts["since"]` and remember these."""
        key = f"{component}/{collector}"
        previous = self._entries.get(key)
        # `until` (this run's time) goes with the facts, so replaying recorded facts
        # later measures the same interval.
        facts["since"] = {**previous, "until": now.isoformat()} if previous else None
        counters = facts.get("counters")
        if isinstance(counters, dict):
            self._entries[key] = {"at": now.isoformat(), "counters": counters}

    def save(self) -> None:
        """Write the file atomically (owner-only); a failure to write is not fatal.

        Anything but a regular file or a symlink at `path` (`--state /dev/null`, a FIFO)
        is left alone: renaming over it would replace a device node when run as root.
        """
        text = json.dumps({"version": _VERSION, "entries": self._entries}, sort_keys=True,
                          default=str)
        try:
            mode = self.path.lstat().st_mode
        except OSError:
            mode = stat.S_IFREG  # absent (or unreadable: the write below will say)
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=".history-")
        except OSError:
            return
        tmp = Path(name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            tmp.replace(self.path)
        except OSError:
            tmp.unlink(missing_ok=True)


def previous_counters(facts: Facts) -> tuple[dict[str, Any], CounterChange] | None:
    """The previous run's counters and when it ran (`delta` 0); None when there was no
    previous run, the counters restarted (another epoch) or the file held nonsense."""
    counters, before = facts.get("counters"), facts.get("since")
    if not isinstance(counters, dict) or not isinstance(before, dict):
        return None
    old = before.get("counters")
    if not isinstance(old, dict) or old.get("epoch") != counters.get("epoch"):
        return None
    try:
        then, until = (datetime.fromisoformat(str(before.get(k))) for k in ("at", "until"))
        seconds = max(0.0, (until - then).total_seconds())  # a clock set back: 0
    except (ValueError, TypeError):  # not a time, or one without a zone
        return None
    return old, CounterChange(0, seconds, then.isoformat(timespec="seconds"))


def since_last_run(facts: Facts, name: str) -> CounterChange | None:
    """The growth of counter `name` since the previous run; None when there was no
    previous run, the counters restarted (another epoch) or went backwards."""
    found = previous_counters(facts)
    if found is None:
        return None
    old, span = found
    current, previous = _number(facts["counters"].get(name)), _number(old.get(name))
    if current is None or previous is None or current < previous:
        return None
    return replace(span, delta=current - previous)


def _number(value: Any) -> float | None:
    """A finite counter value (the file may hold NaN, Infinity or a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        return None
    return value


def default_history_path(stack_path: str | None, stack_name: str) -> Path:
    """$XDG_STATE_HOME/stackmedic/<stack name>-<hash of the stack file's path>.json."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    where = stack_path or "<stack>"
    if not where.startswith("<"):  # a file, not "<discovered>" or "<stack>"
        where = str(Path(where).resolve())
    digest = hashlib.sha256(where.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", stack_name)[:40] or "stack"
    return base / "stackmedic" / f"{slug}-{digest}.json"
