"""The report model: everything renderers show, computed once and redacted."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stackmedic import __version__
from stackmedic.findings import Finding, Severity, overall_status
from stackmedic.redact import redact

if TYPE_CHECKING:
    from stackmedic.doctor import Run

__all__ = ["build_report", "finding_names", "first_fix", "utc_iso"]


def utc_iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, to the millisecond."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_report(run: Run) -> dict[str, Any]:
    """The documented JSON object plus the extras other renderers need (`_` keys)."""
    by_component: dict[str, list[Finding]] = {name: [] for name in run.components}
    for finding in run.findings:
        by_component.setdefault(finding.component, []).append(finding)
    components = []
    for name, findings in by_component.items():
        component = run.components.get(name)
        counts = Counter(f.severity.value for f in findings)
        components.append({
            "name": name,
            "kind": component.kind if component else None,
            "depends_on": list(component.depends_on) if component else [],
            "status": overall_status(findings).value,
            "counts": {s.value: counts.get(s.value, 0) for s in Severity},
        })
    counts = Counter(f.severity.value for f in run.findings)
    report: dict[str, Any] = {
        "stackmedic": __version__,
        "stack": run.stack,
        "started_at": utc_iso(run.started_at),
        "duration_ms": run.duration_ms,
        "status": run.status.value,
        "exit_code": run.exit_code,
        "counts": {s.value: counts.get(s.value, 0) for s in Severity},
        "components": components,
        "findings": [f.to_dict() for f in run.findings],
        "_perfdata": _perfdata(run),
    }
    return dict(redact(report))


_NAGIOS_UNITS = {"ratio": "%", "s": "s", "seconds": "s", "ms": "ms", "bytes": "B", "B": "B",
                 "%": "%", "count": "", "c": "c"}


def _perfdata(run: Run) -> list[dict[str, Any]]:
    """One Nagios perfdata entry per numeric finding: label, value, unit, warn, crit."""
    thresholds = run.thresholds
    entries = []
    seen: set[str] = set()
    for finding in run.findings:
        if not isinstance(finding.observed, int | float) or isinstance(finding.observed, bool) \
                or not math.isfinite(finding.observed):
            continue
        label = ".".join([finding.component, finding.symptom,
                          *(str(finding.evidence[k]) for k in finding.identity
                            if finding.evidence.get(k) is not None)])
        if label in seen:
            continue
        seen.add(label)
        scale = 100.0 if finding.unit == "ratio" else 1.0
        below = False
        try:
            threshold = thresholds.get(finding.symptom, finding.component)
            warn, crit, below = threshold.warning, threshold.critical, \
                threshold.direction == "below"
        except KeyError:
            warn = crit = None
        entries.append({
            "label": label,
            "value": _num(finding.observed * scale),
            "unit": _NAGIOS_UNITS.get(finding.unit or "", ""),
            "warn": None if warn is None else _num(warn * scale),
            "crit": None if crit is None else _num(crit * scale),
            "below": below,  # lower is worse: Nagios writes the range as "15:"
        })
    return entries


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 4)


def finding_names(fingerprints: list[str], by_fp: dict[str, Any]) -> str:
    """"component symptom" of each finding, a repeated one once with its count ("x2")."""
    names = Counter(f"{by_fp[fp]['component']} {by_fp[fp]['symptom']}"
                    for fp in fingerprints if fp in by_fp)
    return ", ".join(name if n == 1 else f"{name} (x{n})" for name, n in names.items())


def first_fix(finding: dict[str, Any]) -> str | None:
    """The first line of a finding's first remedy step (code fences skipped; a lead-in
    ending in ':' with the command after it): what the root-cause summary shows."""
    steps: list[str] = (finding.get("remedy") or {}).get("steps") or []
    stripped = (line.strip() for line in (steps[0] if steps else "").splitlines())
    lines = [line for line in stripped if line and not line.startswith("```")]
    if len(lines) > 1 and lines[0].endswith(":"):  # "List who holds the slots:" + command
        return f"{lines[0]} {lines[1]}"
    return lines[0] if lines else None
