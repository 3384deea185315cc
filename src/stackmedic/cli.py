"""The `stackmedic` command: parse, call the library, render, exit.

Exit codes follow Nagios/check_postgres: 0 ok, 1 warning, 2 critical, 3 unknown.
Errors (a bad stack file, a bad flag, a crash) are one line on stderr (one per mistake
in a stack file) and exit 3, translated in exactly one place (`main`); `--debug` adds
the traceback.
Heavy modules are imported inside commands so `stackmedic --help` starts fast;
sub-command groups of other packages load only when used.
"""

from __future__ import annotations

import enum
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core

from stackmedic import __version__

# `--deadline` bounds the whole command, start-up and stack loading included.
_STARTED = time.monotonic()

__all__ = ["app", "main"]

EXIT_UNKNOWN = 3

app = typer.Typer(
    name="stackmedic",
    help="Diagnose a stack: probes components, reports findings with evidence, cause and fix.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Validate stack files and print their JSON Schema.",
                         rich_markup_mode=None, no_args_is_help=True)
app.add_typer(config_app, name="config")

# Command groups that live in other packages: name -> (module with `app`, short help).
_LAZY_GROUPS: dict[str, tuple[str, str]] = {
    "logs": ("stackmedic.logs.cli", "Scan logs: signatures, templates, spikes, live tail."),
    "entities": ("stackmedic.entities.cli", "Scan stored entities for timestamp and rule faults."),
    "events": ("stackmedic.eventstore.cli", "Event store: integrity scan, lag, rebuild, tail."),
}


class Format(enum.StrEnum):
    terminal = "terminal"
    json = "json"
    markdown = "markdown"
    nagios = "nagios"


_debug = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stackmedic {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    global _debug
    _debug = debug


@app.command()
def doctor(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Stack file (default: $STACKMEDIC_CONFIG, ./stackmedic.yaml, "
        "else discover the local machine).")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] =
        Format.terminal,
    deadline: Annotated[float, typer.Option(help="Seconds the whole run may take.", min=0.5)] =
        10.0,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="Write the report to this file.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress on a terminal.")] = True,
    record: Annotated[Path | None, typer.Option(
        help="Also write the collected facts (redacted JSON) here, to replay in tests.")] = None,
    state: Annotated[Path | None, typer.Option(
        help="Counters of the previous run, for \"since the last run\" (default: "
             "$XDG_STATE_HOME/stackmedic/<stack>-<hash>.json).")] = None,
    no_state: Annotated[bool, typer.Option(
        "--no-state", help="Neither read nor write the previous run's counters.")] = False,
) -> None:
    """Probe the stack and report findings; exit 0 ok, 1 warning, 2 critical, 3 unknown."""
    from stackmedic.doctor import run_doctor
    from stackmedic.history import History, default_history_path
    from stackmedic.report import render

    stack = _resolve_stack(config)
    history = None if no_state else History(
        state or default_history_path(stack.path, stack.name))
    remaining = max(0.5, deadline - (time.monotonic() - _STARTED))
    with _progress(enabled=progress and sys.stderr.isatty()) as on_progress:
        run = run_doctor(stack, deadline=remaining, progress=on_progress, history=history)
    if record is not None:
        import json

        from stackmedic.redact import redact

        record.write_text(json.dumps(redact(run.facts), indent=2, default=str) + "\n",
                          encoding="utf-8")
    to_file = output is not None
    text = render(run, fmt.value, color=not to_file and sys.stdout.isatty() and
                  "NO_COLOR" not in os.environ, width=_width())
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        typer.echo(text.rstrip("\n"))
    raise typer.Exit(run.exit_code)


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="Stack file to validate.")]) -> None:
    """Validate a stack file; prints the components, or one line per error (exit 3)."""
    from stackmedic.config import load_stack

    stack = load_stack(file)
    names = ", ".join(f"{n} ({c.kind})" for n, c in stack.components.items()) or "none"
    typer.echo(f"{file}: ok: stack {stack.name!r}, components: {names}")


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of the stack file (for editor completion)."""
    import json

    from stackmedic.config import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command()
def explain(symptom: Annotated[str, typer.Argument(help="A symptom id, e.g. db.locks.blocking.")]
            ) -> None:
    """Print the runbook for a symptom: what it means, confirm, fix, prevent."""
    from stackmedic.runbooks import blank, has_runbook, load_runbook
    from stackmedic.symptoms import require

    require(symptom)
    if not has_runbook(symptom):
        _fail(f"no runbook for {symptom} yet")
    typer.echo(blank(load_runbook(symptom)).rstrip("\n"))


@app.command()
def checks(
    kind: Annotated[str | None, typer.Option(help="Only this component kind.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List every registered check: id, kind, symptoms, default thresholds, cost."""
    from stackmedic.catalog import check_rows, format_check_rows

    rows = check_rows(kind)
    if as_json:
        import json

        typer.echo(json.dumps(rows, indent=2))
    else:
        typer.echo(format_check_rows(rows))


@app.command()
def symptoms() -> None:
    """List the symptom catalogue: every id a finding may carry."""
    from stackmedic.runbooks import has_runbook
    from stackmedic.symptoms import catalogue

    for sid, detect in catalogue().items():
        mark = " " if has_runbook(sid) else "*"
        typer.echo(f"{mark} {sid:36} {detect}")


def _resolve_stack(config: Path | None) -> Any:
    from stackmedic.config import load_stack

    if config is None and os.environ.get("STACKMEDIC_CONFIG"):
        config = Path(os.environ["STACKMEDIC_CONFIG"])
    if config is None and Path("stackmedic.yaml").is_file():
        config = Path("stackmedic.yaml")
    if config is not None:
        return load_stack(config)
    from stackmedic.discovery import discover_stack

    return discover_stack()


class _progress:
    """A transient progress bar on stderr, shown only once a run passes one second."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None
        self._timer: Any = None
        self._state = (0, 0)

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        import threading

        self._timer = threading.Timer(1.0, self._show)
        self._timer.daemon = True
        self._timer.start()
        return self._update

    def _show(self) -> None:
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task("checking", total=self._state[1] or None,
                                        completed=self._state[0])

    def _update(self, done: int, total: int) -> None:
        self._state = (done, total)
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._bar is not None:
            self._bar.stop()


def _width() -> int:
    import shutil

    return max(60, min(shutil.get_terminal_size((100, 24)).columns, 140))


def _fail(message: str) -> None:
    typer.echo(f"stackmedic: error: {message}", err=True)
    raise typer.Exit(EXIT_UNKNOWN)


class _LazyGroup(typer.core.TyperCommand):
    """A placeholder for a command group in another package, imported when invoked."""

    def __init__(self, name: str, module: str, short_help: str) -> None:
        super().__init__(name=name, help=short_help, short_help=short_help)
        self.module = module

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        try:
            sub = importlib.import_module(self.module).app
        except ImportError as err:
            _fail(f"'{self.name}' is not available: {err}")
        # One look for every command: plain help like ours, no per-group completion.
        sub.rich_markup_mode = None
        sub._add_completion = False
        real = typer.main.get_command(sub)
        real.name = self.name
        return real.make_context(info_name, args, parent=parent, **extra)


def _command() -> Any:
    group = typer.main.get_command(app)
    for name, (module, short_help) in _LAZY_GROUPS.items():
        group.add_command(_LazyGroup(name, module, short_help), name)  # type: ignore[attr-defined]
    return group


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: the one place errors become exit codes."""
    try:  # typer >= 0.22 vendors click
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover - older typer with click installed
        from click.exceptions import ClickException  # type: ignore[assignment,no-redef,unused-ignore]

    from stackmedic.errors import ConfigError, StackmedicError
    from stackmedic.redact import redact_text

    global _STARTED
    _STARTED = time.monotonic()
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = _command().main(args=args, prog_name="stackmedic", standalone_mode=False)
    except ClickException as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # a bare group: its help is the answer
            typer.echo(err.format_message())
            code = 0
        else:
            typer.echo(f"stackmedic: error: {err.format_message()}", err=True)
            code = EXIT_UNKNOWN
    except typer.Abort:
        typer.echo("stackmedic: aborted", err=True)
        code = EXIT_UNKNOWN
    except ConfigError as err:
        if debug:
            raise
        for each in err.errors:  # redact the message only: `….password: ` is not a pair
            typer.echo(f"stackmedic: error: {each.where}{redact_text(each.message)}", err=True)
        code = EXIT_UNKNOWN
    except StackmedicError as err:
        if debug:
            raise
        typer.echo(f"stackmedic: error: {redact_text(str(err))}", err=True)
        code = EXIT_UNKNOWN
    except KeyboardInterrupt:
        typer.echo("stackmedic: interrupted", err=True)
        code = EXIT_UNKNOWN
    except Exception as err:
        if debug:
            raise
        typer.echo(f"stackmedic: internal error: {type(err).__name__}: {redact_text(str(err))} "
                   "(run with --debug for the traceback)", err=True)
        code = EXIT_UNKNOWN
    sys.exit(code if isinstance(code, int) else 0)
