"""The terminal report: grouped by component, root causes first, problems in full."""

from __future__ import annotations

import io
from typing import Any

from stackmedic.report.model import finding_names, first_fix

__all__ = ["render_terminal"]

_STYLE = {"critical": "bold red", "unknown": "bold magenta", "warning": "yellow",
          "info": "cyan", "ok": "green"}
_EVIDENCE_ITEMS = 6
_STEPS = 3


def render_terminal(report: dict[str, Any], *, color: bool = False, width: int = 100) -> str:
    from rich.console import Console
    from rich.markup import escape
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, no_color=not color, width=width,
                      highlight=False, soft_wrap=False)
    findings = report["findings"]
    by_fp = {f["fingerprint"]: f for f in findings}
    status = report["status"]
    counts = report["counts"]
    tally = ", ".join(f"{counts[s]} {s}" for s in ("critical", "unknown", "warning", "info", "ok")
                      if counts[s])
    console.print(Text.assemble(
        ("stackmedic ", "bold"), f"{report['stack']}: ", (status.upper(), _STYLE[status]),
        f"  ({tally or 'no checks ran'}; {report['duration_ms']} ms)"))
    roots = [f for f in findings if f["root_cause"]]
    if roots:
        console.print()
        console.print("[bold]Probable root causes[/]")
        for root in roots:
            line = Table.grid(padding=(0, 1))  # wrapped text stays right of the bullet
            line.add_column(width=1, no_wrap=True)
            line.add_column()
            line.add_row(f"[{_STYLE[root['severity']]}]●[/]",
                         f"[bold]{escape(root['component'])}[/] {escape(root['symptom'])}: "
                         f"{escape(root['summary'])}")
            line.add_row("", f"[dim]explains: {escape(finding_names(root['explains'], by_fp))}[/]")
            fix = first_fix(root)
            if fix:
                line.add_row("", f"[dim]fix:[/] {escape(fix)}")
            console.print(Padding(line, (0, 0, 0, 2), expand=False))
    order = {c["name"]: i for i, c in enumerate(report["components"])}
    ranked = sorted(report["components"], key=lambda c: (
        not any(f["root_cause"] for f in findings if f["component"] == c["name"]),
        order[c["name"]]))
    for component in ranked:
        mine = [f for f in findings if f["component"] == component["name"]]
        problems = [f for f in mine if f["severity"] in ("critical", "unknown", "warning")]
        passed = sum(1 for f in mine if f["severity"] == "ok")
        console.print()
        style = _STYLE[component["status"]]
        console.print(f"[bold]{escape(component['name'])}[/] [dim]({component['kind']})[/] "
                      f"[{style}]{component['status'].upper()}[/]"
                      f"[dim]{f'  {passed} checks ok' if passed else ''}[/]")
        for finding in problems:
            _finding(console, finding, by_fp, escape)
        for finding in (f for f in mine if f["severity"] == "info"):
            _headline(console, finding, escape)
    # Padding pads wrapped lines to the width; trailing blanks only get in the way of
    # copying the report into a ticket.
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _headline(console: Any, finding: dict[str, Any], escape: Any) -> None:
    """SEVERITY symptom: summary, in two columns, so that a long summary wraps under
    itself, not under the severity."""
    from rich.padding import Padding
    from rich.table import Table

    marker = " [bold](root cause)[/]" if finding["root_cause"] else ""
    headline = Table.grid(padding=(0, 1))
    headline.add_column(width=8, no_wrap=True)
    headline.add_column()
    headline.add_row(f"[{_STYLE[finding['severity']]}]{finding['severity'].upper()}[/]",
                     f"{escape(finding['symptom'])}{marker}: {escape(finding['summary'])}")
    console.print(Padding(headline, (0, 0, 0, 2), expand=False))


def _finding(console: Any, finding: dict[str, Any], by_fp: dict[str, Any], escape: Any) -> None:
    from rich.padding import Padding

    def indented(markup: str, left: int) -> None:
        """Print `markup` so that wrapped lines keep the indentation of the first."""
        console.print(Padding(markup, (0, 0, 0, left), expand=False))

    _headline(console, finding, escape)
    evidence = [(k, v) for k, v in finding["evidence"].items() if _short(v)]
    if evidence:
        shown = "  ".join(f"{k}={_fmt(v)}" for k, v in evidence[:_EVIDENCE_ITEMS])
        indented(f"[dim]evidence:[/] {escape(shown)}", 11)
    if finding["explained_by"]:
        causes = finding_names(finding["explained_by"], by_fp)
        indented(f"[dim]explained by:[/] {escape(causes)}", 11)
    if finding["cause"]:
        indented(f"[dim]cause:[/] {escape(finding['cause'])}", 11)
    remedy = finding["remedy"]
    if remedy:
        indented(f"[dim]fix[/] ([dim]stackmedic explain {remedy['runbook']}[/]):", 11)
        for step in remedy["steps"][:_STEPS]:
            lines = [line for line in step.splitlines() if not line.startswith("```")]
            indented("- " + escape(lines[0]), 13)
            for line in lines[1:]:
                indented(escape(line), 15)


def _short(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(str(value)) <= 80


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
