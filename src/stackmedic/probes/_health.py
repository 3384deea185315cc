"""Read the health-body shapes services actually return, into one verdict.

    IETF draft `application/health+json`:
        {"status": "pass|warn|fail", "checks": {"db:connections": [{"status": "fail", ...}]}}
    Spring Boot actuator:
        {"status": "UP|DOWN|OUT_OF_SERVICE", "components": {"db": {"status": "DOWN", ...}}}
    plain:
        {"status": "healthy|degraded|unhealthy"} (optionally with "checks")

Every status word is mapped to pass / warn / fail; sub-checks (nested Spring
components included) that are not passing are listed by name with their output.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["parse_health"]

_MAX_FAILING = 10
_MAX_OUTPUT = 200
_MAX_DEPTH = 16  # nested Spring components followed; real trees are 2-3 deep
_WORDS = {
    "pass": "pass", "ok": "pass", "up": "pass", "healthy": "pass", "green": "pass",
    "warn": "warn", "warning": "warn", "degraded": "warn", "yellow": "warn",
    "fail": "fail", "error": "fail", "down": "fail", "unhealthy": "fail", "red": "fail",
    "out_of_service": "fail", "critical": "fail",
}


def normalize(word: Any) -> str:
    """pass / warn / fail, or unknown for a word no shape uses."""
    return _WORDS.get(str(word).strip().lower(), "unknown") if word is not None else "unknown"


def parse_health(body: str, content_type: str = "") -> dict[str, Any]:
    """{shape, status, raw_status, failing: [{name, status, output}]} for a health body."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: `[[[[…` nested past the stack
        return {"shape": "text", "status": "unknown", "raw_status": body[:_MAX_OUTPUT].strip(),
                "failing": []}
    if not isinstance(data, dict) or "status" not in data:
        return {"shape": "unknown", "status": "unknown", "raw_status": None, "failing": []}
    failing: list[dict[str, Any]] = []
    if "components" in data:
        shape = "spring"
        _spring(data["components"], "", failing)
    else:
        shape = "ietf" if "health+json" in content_type or _ietf_words(data) else "plain"
        _checks(data.get("checks"), failing)
    return {"shape": shape, "status": normalize(data["status"]),
            "raw_status": str(data["status"])[:_MAX_OUTPUT], "failing": failing[:_MAX_FAILING],
            "failing_count": len(failing)}


def _ietf_words(data: dict[str, Any]) -> bool:
    return str(data.get("status")).lower() in ("pass", "warn", "fail")


def _entry(name: str, status: Any, output: Any) -> dict[str, Any]:
    text = output if isinstance(output, str) else json.dumps(output) if output else None
    return {"name": name, "status": str(status), "output": text[:_MAX_OUTPUT] if text else None}


def _spring(components: Any, prefix: str, out: list[dict[str, Any]], depth: int = 0) -> None:
    if not isinstance(components, dict) or depth > _MAX_DEPTH:
        return
    for name, comp in components.items():
        if not isinstance(comp, dict):
            continue
        full = f"{prefix}{name}"
        if "components" in comp:
            _spring(comp["components"], full + ".", out, depth + 1)
        elif normalize(comp.get("status")) != "pass":
            out.append(_entry(full, comp.get("status"), comp.get("details")))


def _checks(checks: Any, out: list[dict[str, Any]]) -> None:
    """IETF `checks` ({"name:measure": [results]}) or a plain {name: status} / list."""
    items: list[tuple[str, Any]]
    if isinstance(checks, dict):
        items = list(checks.items())
    elif isinstance(checks, list):
        items = [(str(c.get("name", i)), c) for i, c in enumerate(checks) if isinstance(c, dict)]
    else:
        return
    for name, value in items:
        results = value if isinstance(value, list) else [value]
        for result in results:
            if isinstance(result, dict):
                status, output = result.get("status"), result.get("output")
                label = name + (f"[{result['componentId']}]" if "componentId" in result else "")
            else:
                status, output, label = result, None, name
            if normalize(status) != "pass":
                out.append(_entry(label, status, output))
