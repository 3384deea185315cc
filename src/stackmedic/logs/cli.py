"""`stackmedic logs …`: scan, templates and tail, as a Typer sub-app.

Each command parses, makes one library call and renders; only typer is imported
at module level so the main CLI's `--help` stays fast.
"""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

__all__ = ["app"]

app = typer.Typer(help="Scan logs: known-issue signatures, templates, error spikes, N+1 "
                       "queries, live tail.", rich_markup_mode=None, no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)

Files = Annotated[list[Path], typer.Argument(help="log files (rotated siblings are included)",
                                             show_default=False)]
NoRotated = Annotated[bool, typer.Option("--no-rotated",
                                         help="read only the named files, not app.log.1…")]


class TemplateFormat(enum.StrEnum):
    table = "table"
    jsonl = "jsonl"


class ScanFormat(enum.StrEnum):
    terminal = "terminal"
    json = "json"
    markdown = "markdown"


@app.command()
def templates(
    files: Files,
    per_line: Annotated[bool, typer.Option("--per-line", help="one record per input line, "
                                           "in order, with template_id and template")] = False,
    fmt: Annotated[TemplateFormat, typer.Option("--format", help="table or jsonl")] =
        TemplateFormat.table,
    save_baseline: Annotated[Path | None, typer.Option(
        help="write the templates to this JSON file, for `scan --baseline`")] = None,
    top: Annotated[int, typer.Option(help="templates shown in the table")] = 50,
    no_rotated: NoRotated = False,
) -> None:
    """Mine the message templates of log files (numbers, ids, paths… become <*>)."""
    from stackmedic.logs.baseline import save_baseline as save
    from stackmedic.logs.readers import ReadStats
    from stackmedic.logs.source import mine_paths

    stats = ReadStats()
    result, error_ids = mine_paths(files, stats, per_line=per_line, rotated=not no_rotated)
    _warn(stats.warnings)
    if stats.unreadable and not stats.lines:
        raise typer.Exit(3)  # nothing could be read: unknown, as the doctor says it
    if save_baseline is not None:
        try:
            save(save_baseline, result, error_ids)
        except OSError as err:
            _fail(err)
    from stackmedic.logs.baseline import redact_template
    from stackmedic.redact import redact_text

    out = sys.stdout
    if per_line:
        # One JSON text per template, written once per line that has it.
        rows = [json.dumps({"template_id": t.id, "template": redact_template(t.text)}) + "\n"
                for t in result.templates]
        out.writelines(map(rows.__getitem__, result.assignments))
        return
    ranked = sorted(result.templates, key=lambda t: -t.count)
    if fmt is TemplateFormat.jsonl:
        for template in ranked:
            out.write(json.dumps({"template_id": template.id,
                                  "template": redact_template(template.text),
                                  "count": template.count,
                                  "example": redact_text(template.example)}) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("count", "template", "example", title=f"{len(ranked)} templates, "
                  f"{stats.lines} lines")
    for template in ranked[:top]:
        table.add_row(str(template.count), redact_template(template.text),
                      redact_text(template.example)[:80])
    Console().print(table)


@app.command()
def scan(
    files: Files,
    fmt: Annotated[ScanFormat, typer.Option("--format", help="terminal, json or markdown")] =
        ScanFormat.terminal,
    pack: Annotated[list[Path] | None, typer.Option(help="extra signature pack (YAML)")] = None,
    baseline: Annotated[Path | None, typer.Option(
        help="templates saved by `templates --save-baseline`: new error templates are "
             "reported")] = None,
    component: Annotated[str, typer.Option(help="component name for the findings")] = "logs",
    window: Annotated[float, typer.Option(help="spike window, seconds", min=1.0)] = 60.0,
    no_rotated: NoRotated = False,
) -> None:
    """Scan log files: signatures, error spikes, N+1 queries and new error templates."""
    from stackmedic.errors import ConfigError
    from stackmedic.logs.diagnose import LogOptions, logs_findings

    options = LogOptions(packs=[str(p) for p in pack or []],
                         baseline=str(baseline) if baseline else None,
                         window=window, rotated=not no_rotated, progress=sys.stderr.isatty())
    try:
        findings = logs_findings([str(f) for f in files], component, options)
    except (ConfigError, ValueError, OSError) as err:
        _fail(err)
    _render(findings, fmt)
    raise typer.Exit(max((f.severity.exit_code for f in findings), default=0))


@app.command()
def tail(
    files: Files,
    interval: Annotated[float, typer.Option(help="seconds between summaries")] = 5.0,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    from_start: Annotated[bool, typer.Option(help="read existing lines first")] = False,
) -> None:
    """Follow log files (across rotation and truncation) and print a live summary."""
    from stackmedic.logs.live import tail_summary

    for line in tail_summary([str(f) for f in files], interval=interval, duration=duration,
                             from_start=from_start):
        typer.echo(line)


def _render(findings: list[Any], fmt: ScanFormat) -> None:
    if fmt is ScanFormat.json:
        typer.echo(json.dumps([f.to_dict() for f in findings], indent=2))
        return
    if fmt is ScanFormat.markdown:
        typer.echo("| severity | symptom | summary |\n| --- | --- | --- |")
        for f in findings:
            typer.echo(f"| {f.severity.value} | `{f.symptom}` | {f.summary} |")
        return
    for f in findings:
        typer.echo(f"{f.severity.value.upper():8s} {f.symptom:34s} {f.summary}")
        if f.is_problem and f.remedy:
            for step in f.remedy.steps[:3]:
                typer.echo(f"         - {step.splitlines()[0]}")


def _fail(err: BaseException) -> NoReturn:
    """A usage or input error as one line on stderr and exit code 3 (unknown)."""
    typer.echo("error: " + " ".join(str(err).split()), err=True)
    raise typer.Exit(3)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
