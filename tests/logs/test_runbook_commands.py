"""Commands in the logs runbooks, run as written (a real SQLite event store)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from stackmedic.eventstore import NewEvent, open_store
from stackmedic.runbooks import fix_steps, load_runbook


def test_projection_lag_rebuild_command_rebuilds(tmp_path: Path) -> None:
    """The projection-lag rebuild step, with the operator's DSN and projection put in,
    is a valid `stackmedic events rebuild` call that replays every event."""
    dsn = f"sqlite:///{tmp_path / 'events.db'}"
    with open_store(dsn) as store:
        store.append("order-1", [NewEvent("placed", {"n": i}) for i in range(3)])
    step = next(s for s in fix_steps(load_runbook("logs.error.projection_lag"))
                if "events rebuild" in s)
    match = re.search(r"`stackmedic (events rebuild [^`]+)`", step)
    assert match, step
    command = match.group(1).replace("DSN", dsn).replace(
        "module:ProjectionClass", "tests.eventstore.helpers:CountingProjection")
    result = subprocess.run([sys.executable, "-m", "stackmedic", *shlex.split(command)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "rebuilt counting: 3 events" in result.stdout
