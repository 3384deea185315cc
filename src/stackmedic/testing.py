"""Helpers for testing checks: run component specs, pick findings by symptom.

    run = run_components({"api": {"kind": "http", "url": "http://127.0.0.1:8000"}})
    assert symptoms(run.findings, "api") == {"http.down"}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from stackmedic.config import parse_stack
from stackmedic.doctor import DEFAULT_DEADLINE, Run, run_doctor
from stackmedic.findings import Finding, Severity
from stackmedic.history import History

__all__ = ["evaluate_facts", "problems", "run_components", "symptoms", "with_symptom"]


def run_components(components: Mapping[str, Mapping[str, Any]], *,
                   thresholds: Mapping[str, Mapping[str, float | None]] | None = None,
                   deadline: float = DEFAULT_DEADLINE, environ: Mapping[str, str] | None = None,
                   history: History | None = None) -> Run:
    """Validate component specs as a stack file would, run them, return the run."""
    doc = {"stack": "test", "components": dict(components), "thresholds": dict(thresholds or {})}
    stack = parse_stack(yaml.safe_dump(doc, sort_keys=False), "<test>", environ)
    return run_doctor(stack, deadline=deadline, history=history)


def problems(findings: Iterable[Finding]) -> list[Finding]:
    """Warning, critical and unknown findings."""
    return [f for f in findings if f.is_problem]


def symptoms(findings: Iterable[Finding], component: str | None = None,
             at_least: Severity = Severity.WARNING) -> set[str]:
    """Symptom ids of findings at or above `at_least` (unknown counts as a problem)."""
    return {f.symptom for f in findings
            if (component is None or f.component == component)
            and (f.severity is Severity.UNKNOWN or f.severity.rank >= at_least.rank)}


def with_symptom(findings: Iterable[Finding], symptom: str) -> list[Finding]:
    """The findings carrying `symptom`."""
    return [f for f in findings if f.symptom == symptom]


def evaluate_facts(name: str, spec: Mapping[str, Any], collector: str, facts: Mapping[str, Any],
                   *, thresholds: Mapping[str, Mapping[str, float | None]] | None = None,
                   environ: Mapping[str, str] | None = None) -> list[Finding]:
    """Apply the rules of `spec`'s kind to recorded `facts` of `collector`.

    This is how a rule is tested without the system it judges: record facts once
    (`stackmedic doctor --record facts.json`), then assert findings from them.
    """
    from stackmedic.checks import default_thresholds
    from stackmedic.doctor import evaluate
    from stackmedic.thresholds import Thresholds

    doc = {"stack": "test", "components": {name: dict(spec)}}
    stack = parse_stack(yaml.safe_dump(doc, sort_keys=False), "<test>", environ)
    resolved = Thresholds(default_thresholds(), thresholds or {}, stack.component_thresholds(),
                          environ=environ if environ is not None else {})
    return evaluate(name, stack.components[name], collector, dict(facts), resolved)
