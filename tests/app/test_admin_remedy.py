"""The breaker remedy's admin command, run as printed against a real mounted service."""

from __future__ import annotations

import os
import subprocess

from starlette.applications import Starlette
from starlette.routing import Mount

from stackmedic.observe import Diagnostics, ObserveApp
from stackmedic.resilience import BreakerRegistry, State
from stackmedic.testing import run_components, with_symptom
from tests.app.servers import serve

TOKEN = "remedy-admin-token"


def test_reset_command_of_a_forced_open_breaker_works_under_a_mount_prefix() -> None:
    """With the observe routes mounted under /ops, the remedy's `curl .../reset` (run by
    a shell with the admin token) reaches the admin route and closes the breaker."""
    registry = BreakerRegistry()
    registry.breaker("payments")
    registry.transition("payments", "forced_open")
    diagnostics = Diagnostics(service="shop")
    diagnostics.add_breakers(registry)
    service = Starlette(routes=[Mount("/ops", app=ObserveApp(diagnostics=diagnostics,
                                                              admin_token=TOKEN))])
    with serve(service) as app:
        findings = run_components({"shop": {"kind": "app", "url": app.url,
                                            "health_path": "/ops/health",
                                            "diagnostics_path": "/ops/diagnostics"}}).findings
        breaker = with_symptom(findings, "resilience.breaker.open")[0]
        assert breaker.remedy is not None
        command = next(line.strip() for step in breaker.remedy.steps
                       for line in step.splitlines() if line.strip().startswith("curl")
                       and line.rstrip().endswith("/reset"))
        result = subprocess.run(["bash", "-c", command + " --fail --max-time 10"],
                                env={**os.environ, "STACKMEDIC_ADMIN_TOKEN": TOKEN},
                                capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, (command, result.stderr)
    assert registry["payments"].state is State.CLOSED
