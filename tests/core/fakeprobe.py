"""A test-only component kind whose facts come straight from its stack-file entry.

It lets core tests drive the runner, correlation and renderers with chosen facts
(as recorded facts would), without any real system in between.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from pydantic import Field

from stackmedic.checks import CollectContext, Facts, Probe, RuleContext
from stackmedic.config import ComponentBase
from stackmedic.findings import Finding, Severity
from stackmedic.thresholds import Threshold


class FakeComponent(ComponentBase):
    """`{kind: fake, symptom: db.down, value: 0.9, sleep: 0, crash: false}`."""

    symptom: str = "host.disk.full"
    value: float = 0.0
    sleep: float = 0.0
    crash: bool = False
    evidence: dict[str, Any] = Field(default_factory=dict)
    counters: dict[str, Any] | None = None  # handed to the history, when set


probe = Probe("fake", FakeComponent, description="test-only kind with scripted facts")


@probe.collector("facts", timeout=30.0)
def facts(component: FakeComponent, ctx: CollectContext) -> Facts:
    """Return the scripted facts after sleeping, or raise when told to crash."""
    time.sleep(component.sleep)
    if component.crash:
        raise RuntimeError("scripted crash")
    found: Facts = {"symptom": component.symptom, "value": component.value,
                    "evidence": component.evidence}
    if component.counters is not None:
        found["counters"] = component.counters
    return found


@probe.rule("fake.judge", uses="facts",
            symptoms=["host.disk.full", "db.down", "http.slow", "http.status.error",
                      "cache.down", "net.tcp.refused", "http.down", "db.locks.blocking"],
            thresholds={"host.disk.full": Threshold(0.85, 0.95, unit="ratio")})
def judge(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """host.disk.full is judged against its threshold; other symptoms are critical
    when value > 0 and ok otherwise."""
    symptom = facts["symptom"]
    evidence = facts["evidence"]
    if symptom == "host.disk.full":
        yield ctx.judge(symptom, facts["value"], f"disk {facts['value']:.0%} full",
                        evidence=evidence, identity=tuple(evidence))
        return
    severity = Severity.CRITICAL if facts["value"] > 0 else Severity.OK
    yield ctx.finding(symptom, severity, f"{symptom} scripted", observed=facts["value"],
                      evidence=evidence, identity=tuple(evidence))
