"""The `app` kind against small real services built from the library (no framework)."""

from __future__ import annotations

import threading

import pytest

from stackmedic.findings import Severity
from stackmedic.observe import Diagnostics, Health, ObserveApp
from stackmedic.resilience import BreakerConfig, BreakerRegistry, State
from stackmedic.testing import run_components, with_symptom
from tests.app.servers import serve


def cycle(registry: BreakerRegistry, name: str, times: int) -> None:
    """Really trip and recover breaker `name` `times` times (3 transitions each)."""
    breaker = registry[name]
    for _ in range(times):
        with pytest.raises(ConnectionError):
            breaker.call(lambda: (_ for _ in ()).throw(ConnectionError("down")))
        threading.Event().wait(0.03)
        breaker.call(lambda: "ok")
    assert breaker.state is State.CLOSED


def test_a_breaker_that_keeps_tripping_is_flapping() -> None:
    """Twelve real transitions within the window make resilience.breaker.flapping critical."""
    registry = BreakerRegistry({"twitchy": BreakerConfig(consecutive_failures=1,
                                                         wait_duration=0.02, half_open_calls=1)})
    registry.breaker("search", "twitchy")
    registry.breaker("steady", "twitchy")
    cycle(registry, "search", 4)
    diagnostics = Diagnostics()
    diagnostics.add_breakers(registry)
    with serve(ObserveApp(diagnostics=diagnostics)) as app:
        findings = run_components({"svc": {"kind": "app", "url": app.url}}).findings
    flapping = {f.evidence["name"]: f for f in with_symptom(findings,
                                                             "resilience.breaker.flapping")}
    assert (flapping["search"].severity, flapping["search"].observed) == (Severity.CRITICAL, 12)
    assert flapping["steady"].severity is Severity.OK
    assert len(flapping["search"].evidence["transitions"]) == 10


def test_half_open_is_a_warning_and_forced_open_is_critical() -> None:
    """A half-open breaker is reported as a warning, one forced open as critical."""
    registry = BreakerRegistry()
    registry.breaker("a")
    registry.breaker("b")
    registry.transition("a", "half_open")
    registry.transition("b", "forced_open")
    diagnostics = Diagnostics()
    diagnostics.add_breakers(registry)
    with serve(ObserveApp(diagnostics=diagnostics)) as app:
        findings = run_components({"svc": {"kind": "app", "url": app.url}}).findings
    states = {f.evidence["name"]: f.severity for f in with_symptom(findings,
                                                                   "resilience.breaker.open")}
    assert states == {"a": Severity.WARNING, "b": Severity.CRITICAL}


def test_a_service_without_diagnostics_is_a_status_error_but_health_still_counts() -> None:
    """With only /health mounted, the doctor says /diagnostics is missing and reads health."""
    health = Health()
    health.add("db:responseTime", lambda: False)
    with serve(ObserveApp(health=health)) as app:
        findings = run_components({"svc": {"kind": "app", "url": app.url}}).findings
    status = with_symptom(findings, "http.status.error")[0]
    assert (status.severity, status.observed) == (Severity.WARNING, 404)
    failing = with_symptom(findings, "http.health.failing")[0]
    assert failing.severity is Severity.CRITICAL
    assert failing.evidence["failing_checks"] == "db:responseTime"
