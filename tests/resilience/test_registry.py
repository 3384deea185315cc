"""The breaker registry and the shape of the `stackmedic.resilience` package."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import pytest

import stackmedic.observe as observe
import stackmedic.resilience as resilience
from stackmedic.resilience import BreakerConfig, BreakerEvent, BreakerRegistry, State


def test_breakers_share_named_configs_and_report_metrics() -> None:
    """Breakers created from a named config use it, and metrics() snapshots each by name."""
    registry = BreakerRegistry({"strict": BreakerConfig(consecutive_failures=1)})
    strict = registry.breaker("payments", "strict")
    registry.breaker("search")
    assert registry.breaker("payments") is strict
    with pytest.raises(ZeroDivisionError):
        strict.call(lambda: 1 / 0)
    metrics = registry.metrics()
    assert sorted(metrics) == ["payments", "search"]
    assert metrics["payments"].state == "open" and metrics["payments"].retry_after is not None
    assert metrics["search"].to_dict()["state"] == "closed"


def test_runtime_reset_force_and_reconfigure() -> None:
    """The registry resets, forces and re-thresholds a breaker by name at run time."""
    registry = BreakerRegistry()
    events: list[BreakerEvent] = []
    registry.add_listener(events.append)
    breaker = registry.breaker("db")
    registry.transition("db", "forced_open")
    assert breaker.state is State.FORCED_OPEN
    registry.reset("db")
    registry.reconfigure("db", failure_rate_threshold=0.2, minimum_calls=5)
    assert breaker.config.failure_rate_threshold == 0.2
    assert breaker.metrics().failure_rate_threshold == 0.2
    assert [getattr(e, "to_state", None) for e in events] == ["forced_open", "closed"]


@pytest.mark.parametrize("package", [resilience, observe])
def test_all_lists_exactly_the_public_names(package: ModuleType) -> None:
    """`__all__` names every public attribute of the package and nothing else."""
    public = {n for n in vars(package) if not n.startswith("_")}
    assert set(package.__all__) == public


def test_import_pulls_in_no_third_party_package() -> None:
    """`import stackmedic.resilience` loads neither httpx, pydantic nor fastapi."""
    code = ("import sys, stackmedic.resilience, stackmedic.observe; "
            "print(sorted({'httpx','pydantic','fastapi','starlette','yaml'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
