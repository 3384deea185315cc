"""Renderers: turn a `Run` into terminal, JSON, Markdown or Nagios text.

`build_report` does every calculation once (status, counts, root causes, perfdata)
and redacts the result; renderers only format that dict. Nothing reaches output
without passing through `stackmedic.redact.redact`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stackmedic.report.model import build_report

if TYPE_CHECKING:
    from stackmedic.doctor import Run

__all__ = ["FORMATS", "build_report", "render"]

FORMATS = ("terminal", "json", "markdown", "nagios")


def render(run: Run, fmt: str = "terminal", *, color: bool = False, width: int = 100) -> str:
    """The run as text in format `fmt` (one of FORMATS)."""
    report = build_report(run)
    renderer: Callable[..., str]
    if fmt == "json":
        from stackmedic.report.json import render_json as renderer
    elif fmt == "markdown":
        from stackmedic.report.markdown import render_markdown as renderer
    elif fmt == "nagios":
        from stackmedic.report.nagios import render_nagios as renderer
    elif fmt == "terminal":
        from stackmedic.report.terminal import render_terminal

        return render_terminal(report, color=color, width=width)
    else:
        raise ValueError(f"unknown format {fmt!r} (expected one of: {', '.join(FORMATS)})")
    return renderer(report)
