"""`--format json`: the one object documented in docs/json-output.md."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["render_json"]


def render_json(report: dict[str, Any]) -> str:
    """The public keys of the report as indented JSON (private `_` keys dropped)."""
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    return json.dumps(public, indent=2, ensure_ascii=False)
