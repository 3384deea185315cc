"""process.down's remedy depends on whether the unit still runs: real `sleep`-like
children stand in for a service's workers."""

from __future__ import annotations

from stackmedic.findings import Severity
from tests.probes.helpers_host import child
from tests.probes.helpers_host import only as only_finding
from tests.probes.test_process import SLEEPER, marker, run_proc


def test_some_workers_missing_offer_restart_none_running_offers_start() -> None:
    """Two of three expected workers running: the unit is active, so the remedy looks
    for why workers died (service log, kernel OOM kills, worker settings) and offers a
    `systemctl restart` with its cost, never a `systemctl start` that would do nothing.
    Once they are all gone, `systemctl start` is the step again."""
    token = marker()
    with child(SLEEPER, token), child(SLEEPER, token):
        short = only_finding(run_proc(cmdline=f"{token}$", min_count=3), "process.down")
    assert short.severity is Severity.WARNING and short.observed == 2
    assert short.remedy is not None
    steps = "\n".join(short.remedy.steps)
    assert "systemctl start" not in steps, steps
    assert "systemctl restart svc" in steps and "in-flight requests are cut" in steps
    assert "journalctl -k | grep -i 'killed process'" in steps
    assert "2 of 3 run" in steps
    down = only_finding(run_proc(cmdline=f"{token}$", min_count=3), "process.down")
    assert down.severity is Severity.CRITICAL and down.remedy is not None
    steps = "\n".join(down.remedy.steps)
    assert "systemctl start svc" in steps and "systemctl restart" not in steps
