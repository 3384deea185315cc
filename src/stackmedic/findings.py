"""The one currency: `Finding`, its `Severity`, `Remedy` and fingerprint.

Everything that looks at the world produces findings; everything that shows or
stores results consumes them. A finding is a frozen value: correlation and remedy
filling return new findings with `dataclasses.replace`.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

__all__ = ["Finding", "Remedy", "Severity", "overall_status", "sort_key"]


class Severity(enum.Enum):
    """How bad a finding is.

    `ok < info < warning < critical` is an order; `unknown` stands outside it (a
    check that could not run) and is never treated as ok.
    """

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        """Position for sorting worst-first; unknown sorts between warning and critical,
        as Nagios ranks service states."""
        return _RANK[self]

    @property
    def exit_code(self) -> int:
        """The Nagios/check_postgres exit code for a run whose worst finding is this."""
        return _EXIT[self]


_RANK = {
    Severity.OK: 0,
    Severity.INFO: 1,
    Severity.WARNING: 2,
    Severity.UNKNOWN: 3,
    Severity.CRITICAL: 4,
}
_EXIT = {
    Severity.OK: 0,
    Severity.INFO: 0,
    Severity.WARNING: 1,
    Severity.CRITICAL: 2,
    Severity.UNKNOWN: 3,
}


@dataclass(frozen=True, slots=True)
class Remedy:
    """What to do: the runbook to read and its steps with the evidence filled in."""

    runbook: str
    steps: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"runbook": self.runbook, "steps": list(self.steps)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One verdict about one component, with the facts behind it.

    `identity` names the evidence keys that say *which* problem this is (a pid, a
    path, a table); the fingerprint hashes them with the check and component, so the
    same problem keeps its fingerprint across runs while its numbers change.
    """

    check: str
    symptom: str
    component: str
    severity: Severity
    summary: str
    observed: float | int | str | None = None
    threshold: float | int | str | None = None
    unit: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    cause: str | None = None
    remedy: Remedy | None = None
    identity: tuple[str, ...] = ()
    root_cause: bool = False
    explains: tuple[str, ...] = ()
    explained_by: tuple[str, ...] = ()
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", self.compute_fingerprint())

    def compute_fingerprint(self) -> str:
        """Stable hash of (check, symptom, component, identifying evidence)."""
        key = [self.check, self.symptom, self.component]
        key += [f"{name}={self.evidence.get(name)!r}" for name in self.identity]
        return hashlib.sha256("\x1f".join(key).encode()).hexdigest()[:16]

    @property
    def is_problem(self) -> bool:
        """True for warning, critical and unknown: what a report must show."""
        return self.severity in (Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape documented in docs/json-schema.md (keys are stable)."""
        return {
            "check": self.check,
            "symptom": self.symptom,
            "component": self.component,
            "severity": self.severity.value,
            "summary": self.summary,
            "observed": _jsonable(self.observed),
            "threshold": self.threshold,
            "unit": self.unit,
            "evidence": _jsonable(self.evidence),
            "cause": self.cause,
            "remedy": self.remedy.to_dict() if self.remedy else None,
            "fingerprint": self.fingerprint,
            "root_cause": self.root_cause,
            "explains": list(self.explains),
            "explained_by": list(self.explained_by),
        }


def _jsonable(value: Any) -> Any:
    """Evidence as plain JSON types (tuples become lists, datetimes UTC ISO 8601 with Z,
    NaN/Infinity null, odd objects strings)."""
    return json.loads(json.dumps(value, default=_json_default), parse_constant=lambda _: None)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def overall_status(findings: Iterable[Finding]) -> Severity:
    """The worst severity of a run (critical > unknown > warning > info > ok)."""
    worst = Severity.OK
    for finding in findings:
        if finding.severity.rank > worst.rank:
            worst = finding.severity
    return worst


def sort_key(finding: Finding) -> tuple[int, int, str, str]:
    """Root causes first, then worst first, then by component and check."""
    return (0 if finding.root_cause else 1, -finding.severity.rank, finding.component,
            finding.check)
