"""`--format markdown`: a report to paste into an incident ticket."""

from __future__ import annotations

import json
import re
from typing import Any

from stackmedic.report.model import finding_names, first_fix

__all__ = ["render_markdown"]

_ICON = {"critical": "🔴", "unknown": "⚪", "warning": "🟠", "info": "🔵", "ok": "🟢"}


def render_markdown(report: dict[str, Any]) -> str:
    findings = report["findings"]
    problems = [f for f in findings if f["severity"] in ("critical", "unknown", "warning")]
    roots = [f for f in problems if f["root_cause"]]
    by_fp = {f["fingerprint"]: f for f in findings}
    out = [
        f"# stackmedic report: {report['stack']}",
        "",
        f"**Status: {report['status'].upper()}** (exit {report['exit_code']}) · "
        f"{report['started_at']} · {report['duration_ms']} ms · stackmedic {report['stackmedic']}",
        "",
        "| component | kind | status |",
        "|---|---|---|",
        *(f"| {c['name']} | {c['kind'] or ''} | {_ICON[c['status']]} {c['status']} |"
          for c in report["components"]),
        "",
    ]
    if roots:
        out += ["## Probable root causes", ""]
        for root in roots:
            explained = finding_names(root["explains"], by_fp)
            fix = first_fix(root)
            out.append(f"- **{root['component']}: {root['symptom']}** — {_cell(root['summary'])}"
                       f" (explains {explained})" + (f"; fix: {_code(fix)}" if fix else ""))
        out.append("")
    out += ["## Findings", ""]
    if problems:
        out += ["| severity | component | symptom | summary |", "|---|---|---|---|"]
        out += [f"| {_ICON[f['severity']]} {f['severity']} | {f['component']} | `{f['symptom']}`"
                f" | {_cell(f['summary'])} |" for f in problems]
    else:
        out.append(f"No problems: {len(findings)} checks passed.")
    out.append("")
    for finding in problems:
        out += _details(finding)
    steps = [(f, step) for f in problems for step in (f["remedy"] or {}).get("steps", [])[:3]]
    if steps:
        out += ["## Next steps", ""]
        for n, (finding, step) in enumerate(steps, 1):
            first, *rest = step.splitlines()
            out.append(f"{n}. ({finding['component']} `{finding['symptom']}`) {first}")
            out += [f"   {line}" for line in rest]
        out.append("")
    return "\n".join(out)


def _details(finding: dict[str, Any]) -> list[str]:
    out = [f"### {finding['component']}: {finding['symptom']}", "",
           f"{finding['summary']}", ""]
    if finding["observed"] is not None:
        unit = f" {finding['unit']}" if finding["unit"] else ""
        limit = f" (threshold {finding['threshold']})" if finding["threshold"] is not None else ""
        out += [f"- observed: {finding['observed']}{unit}{limit}"]
    if finding["cause"]:
        out += [f"- probable cause: {finding['cause']}"]
    if finding["remedy"]:
        out += [f"- runbook: `stackmedic explain {finding['remedy']['runbook']}`"]
    out += [f"- fingerprint: `{finding['fingerprint']}`", ""]
    if finding["evidence"]:
        out += ["```json", json.dumps(finding["evidence"], indent=2, ensure_ascii=False)[:4000],
                "```", ""]
    return out


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: str) -> str:
    """`text` as a Markdown code span: fenced with one backtick more than its longest run
    of backticks, padded with spaces when it starts or ends with one (CommonMark)."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or fence != "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"
