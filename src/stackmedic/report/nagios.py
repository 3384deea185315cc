"""`--format nagios`: one status line plus perfdata, as check_postgres prints it.

    STACKMEDIC CRITICAL - 1 critical, 2 warning: db db.down: …; api http.slow: … | 'label'=v;w;c
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["render_nagios"]

_SAFE_LABEL = re.compile(r"^[A-Za-z0-9_.:/\-]+$")


def render_nagios(report: dict[str, Any]) -> str:
    status = report["status"].upper()
    problems = [f for f in report["findings"]
                if f["severity"] in ("critical", "unknown", "warning")]
    counts = report["counts"]
    tally = ", ".join(f"{counts[s]} {s}" for s in ("critical", "unknown", "warning") if counts[s])
    if problems:
        details = "; ".join(f"{f['component']} {f['symptom']}: {f['summary']}"
                            for f in problems[:5])
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        text = f"{tally}: {details}{more}"
    else:
        text = f"{len(report['components'])} components, {len(report['findings'])} checks ok"
    perf = " ".join(_perf(entry) for entry in report["_perfdata"])
    line = f"STACKMEDIC {status} - {_oneline(text)}"
    return f"{line} | {perf}" if perf else line


def _perf(entry: dict[str, Any]) -> str:
    label = entry["label"].replace("'", "").replace("=", "_")
    if not _SAFE_LABEL.match(label):
        label = f"'{label}'"
    # A lower-is-worse level is a range whose lower bound alerts: "15:" (plugin guidelines).
    bound = ":" if entry.get("below") else ""
    warn = "" if entry["warn"] is None else f"{entry['warn']}{bound}"
    crit = "" if entry["crit"] is None else f"{entry['crit']}{bound}"
    return f"{label}={entry['value']}{entry['unit']};{warn};{crit}".rstrip(";")


def _oneline(text: str) -> str:
    """Nagios reads the first line only, and `|` starts perfdata."""
    return " ".join(text.split()).replace("|", "/")
