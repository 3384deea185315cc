"""Runbooks: one Markdown file per symptom, filled from a finding's evidence.

Each file has the sections *What it means*, *Confirm*, *Fix* and *Prevent*.
Placeholders such as `{evidence.pid}`, `{component}`, `{observed}` or
`{threshold}` are filled from the finding (floats rounded as a person writes them);
unknown ones stay visible as `<pid>`, and `stackmedic explain` shows them all that way.
The items of *Fix* become the finding's `remedy.steps`.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from functools import cache
from importlib.resources import files
from typing import Any

from stackmedic.findings import Finding, Remedy

__all__ = ["SECTIONS", "attach_remedy", "blank", "fill", "fix_steps", "has_runbook",
           "load_runbook"]

SECTIONS = ("What it means", "Confirm", "Fix", "Prevent")
_ITEM = re.compile(r"^(?:[-*]|\d+[.)])\s+")


def has_runbook(symptom: str) -> bool:
    return files(__package__).joinpath(f"{symptom}.md").is_file()


@cache
def load_runbook(symptom: str) -> str:
    """The runbook's Markdown text; FileNotFoundError if there is none."""
    return files(__package__).joinpath(f"{symptom}.md").read_text("utf-8")


def sections(text: str) -> dict[str, str]:
    """Section title → body, for the `## Title` sections of a runbook."""
    out: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return {k: v.strip() for k, v in out.items()}


def fix_steps(text: str) -> list[str]:
    """The list items of the *Fix* section, each with any code block that follows it."""
    steps: list[str] = []
    in_code = False
    for line in sections(text).get("Fix", "").splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
            if steps:
                steps[-1] += "\n" + line.strip()
            continue
        if not in_code and _ITEM.match(line):
            steps.append(_ITEM.sub("", line, count=1).rstrip())
        elif steps and line.strip():
            steps[-1] += "\n" + (line.strip() if not in_code else line.rstrip())
    return steps


class _Placeholders(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return f"<{key.rsplit('.', 1)[-1]}>"


# Only {identifier.parts} are placeholders: braces in code samples stay as they are.
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*(?:\.[A-Za-z0-9_]+)?)\}")


def fill(template: str, finding: Finding) -> str:
    """Replace `{evidence.key}`, `{component}`, `{observed}`… with the finding's values."""
    values = _Placeholders(component=finding.component, symptom=finding.symptom,
                           check=finding.check)
    for name in ("observed", "threshold", "unit"):
        if getattr(finding, name) is not None:
            values[name] = _shown(getattr(finding, name))
    for key, value in finding.evidence.items():
        if isinstance(value, str | int | float):
            values[f"evidence.{key}"] = _shown(value)
    return "".join(_fill_line(line, values) for line in template.splitlines(keepends=True))


def _fill_line(line: str, values: _Placeholders) -> str:
    """One template line filled; a multi-line value (two SQL statements) keeps the
    indentation of the line, so it stays inside the code block it is filled into."""
    pad = line[:len(line) - len(line.lstrip())]
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]).replace("\n", "\n" + pad), line)


def blank(template: str) -> str:
    """The runbook as `stackmedic explain` shows it: `<key>` where a finding's value goes."""
    return _PLACEHOLDER.sub(lambda m: _Placeholders()[m.group(1)], template)


def _shown(value: Any) -> Any:
    """A float as a person writes it (2.709, not 2.7090124249998553)."""
    if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) >= 0.01 else f"{value:.3g}"
    return value


def attach_remedy(finding: Finding) -> Finding:
    """The finding with `remedy` set from its runbook (problems only; rules may set
    their own remedy, which is kept)."""
    if finding.remedy is not None or not finding.is_problem or not has_runbook(finding.symptom):
        return finding
    steps = tuple(fill(step, finding) for step in fix_steps(load_runbook(finding.symptom)))
    return replace(finding, remedy=Remedy(runbook=finding.symptom, steps=steps))
