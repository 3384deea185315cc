"""Listing registered checks without running anything (`stackmedic checks`)."""

from __future__ import annotations

from typing import Any

from stackmedic.checks import all_probes

__all__ = ["check_rows", "format_check_rows"]


def check_rows(kind: str | None = None) -> list[dict[str, Any]]:
    """One row per rule: id, kind, collector, symptoms, default thresholds, cost."""
    rows = []
    for probe_kind, probe in sorted(all_probes().items()):
        if kind is not None and probe_kind != kind:
            continue
        for rule in probe.rules:
            rows.append({
                "check": rule.id,
                "kind": probe_kind,
                "collector": probe.collectors[rule.uses].id,
                "timeout_s": probe.collectors[rule.uses].timeout,
                "symptoms": list(rule.symptoms),
                "thresholds": {
                    sid: {"warning": t.warning, "critical": t.critical, "unit": t.unit,
                          "direction": t.direction}
                    for sid, t in rule.thresholds.items()},
                "cost": rule.cost,
                "description": rule.description,
            })
    return rows


def format_check_rows(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of `check_rows` output."""
    lines = []
    for row in rows:
        limits = "; ".join(
            f"{sid} warn {t['warning']} crit {t['critical']}{' ' + t['unit'] if t['unit'] else ''}"
            for sid, t in row["thresholds"].items())
        lines.append(f"{row['check']:34} {row['kind']:11} {', '.join(row['symptoms'])}")
        if row["description"]:
            lines.append(f"{'':34} {row['description']}")
        if limits:
            lines.append(f"{'':34} thresholds: {limits}")
    return "\n".join(lines) if lines else "no checks registered"
