"""`stackmedic events …`: scan, lag, rebuild, tail (mounted by the lead's cli.py).

Each command parses, makes one library call, renders, and maps the outcome to the
Nagios exit codes (0 ok, 1 warning, 2 critical, 3 unknown); library errors become a
one-line message on stderr in `_run`, the only place that catches them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

app = typer.Typer(help="Event store: integrity scan, projection lag, rebuild, tail.",
                  no_args_is_help=True)

DSN = typer.Option(..., help="sqlite:///events.db or postgresql://…")
PROJECTIONS = typer.Option([], help="checkpoint name (repeat; default: all)")


def _run(command: str, work: Callable[[], int]) -> None:
    try:
        code = work()
    except Exception as err:  # the one place library errors become an exit code
        from stackmedic import redact

        typer.echo(f"events {command}: {redact.redact_text(str(err))}", err=True)
        raise typer.Exit(3 if not isinstance(err, _Critical) else 2) from None
    raise typer.Exit(code)


class _Critical(Exception):
    """A failure that is a verdict (e.g. a rebuild that failed and was rolled back)."""


def _echo_json(data: Any) -> None:
    import json

    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def scan(dsn: str = DSN,
         schema: str = typer.Option("stackmedic", help="stackmedic | eventsourcing | messagedb"),
         table: str | None = typer.Option(None, help="event table (eventsourcing: <app>_events)"),
         as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """Scan for version gaps/repeats, duplicate ids, bad payloads and bad timestamps."""

    def work() -> int:
        from dataclasses import replace

        from stackmedic.eventstore import integrity

        mappings = {"stackmedic": integrity.stackmedic_mapping(),
                    "eventsourcing": integrity.eventsourcing_mapping(
                        table or "stored_events", sqlite=dsn.startswith("sqlite:")),
                    "messagedb": integrity.MESSAGE_DB}
        if schema not in mappings:
            raise ValueError(f"--schema must be one of {', '.join(mappings)}")
        mapping = mappings[schema]
        report = integrity.scan(dsn, replace(mapping, table=table) if table else mapping)
        if as_json:
            _echo_json(report.to_dict())
        else:
            typer.echo(f"{report.events} events (head {report.head}) in {report.seconds:.2f}s")
            for kind, count in report.counts.items():
                mark = "skipped: " + report.skipped[kind] if kind in report.skipped else count
                typer.echo(f"  {kind:24} {mark}")
                for anomaly in report.samples[kind]:
                    typer.echo(f"      stream {anomaly.stream} position {anomaly.position}: "
                               f"{anomaly.detail}")
        return 0 if report.ok else 2

    _run("scan", work)


@app.command()
def lag(dsn: str = DSN,
        projection: list[str] = PROJECTIONS,
        as_json: bool = typer.Option(False, "--json", help="print reports as JSON")) -> None:
    """Lag of each projection in events and time: healthy, warning, critical, stalled,
    ahead (checkpoint beyond the head)."""

    def work() -> int:
        from stackmedic.eventstore import open_store
        from stackmedic.eventstore.lag import LagMonitor

        with open_store(dsn, read_only=True) as store:
            monitor = LagMonitor(store)
            reports = ([monitor.check(n) for n in projection] if projection
                       else monitor.check_all())
        if as_json:
            _echo_json([r.to_dict() for r in reports])
        for r in reports if not as_json else []:
            typer.echo(f"{r.state:9} {r.projection:24} {r.lag_events:>8} events "
                       f"{r.lag_seconds:>8.0f}s  {r.reason}")
        worst = {"healthy": 0, "warning": 1, "critical": 2, "stalled": 2, "ahead": 2}
        return max((worst[r.state] for r in reports), default=0)

    _run("lag", work)


@app.command()
def rebuild(dsn: str = DSN,
            projection: str = typer.Option(..., help="module:Class of the projection"),
            from_time: str | None = typer.Option(None, help="replay from this ISO time"),
            from_position: int | None = typer.Option(None, help="replay from this event"),
            batch_size: int = typer.Option(1000, min=1,
                                           help="events per checkpointed batch")) -> None:
    """Rebuild a projection (backup first, restored if the rebuild fails)."""

    def work() -> int:
        from datetime import datetime

        from rich.progress import Progress

        from stackmedic.entities.scan import load_entity
        from stackmedic.eventstore import RebuildError, open_store
        from stackmedic.eventstore import rebuild as rebuilding

        projection_obj = load_entity(projection)()
        when = datetime.fromisoformat(from_time) if from_time else None
        with open_store(dsn, read_only=True) as existing:  # a mistyped DSN must not
            existing.head()  # create an empty store and "rebuild" from it
        with open_store(dsn) as store, Progress(transient=True) as bar:
            task = bar.add_task(f"rebuilding {projection_obj.name}", total=store.head())
            try:
                stats = rebuilding.rebuild(
                    store, projection_obj, from_time=when, from_position=from_position,
                    batch_size=batch_size,
                    progress=lambda pos, head: bar.update(task, completed=pos, total=head))
            except RebuildError as err:
                raise _Critical(str(err)) from None
        typer.echo(f"rebuilt {projection_obj.name}: {stats.processed} events in "
                   f"{stats.batches} batches, checkpoint {stats.position}")
        return 0

    _run("rebuild", work)


@app.command()
def tail(dsn: str = DSN,
         after: int | None = typer.Option(None, help="start after this position "
                                                     "(default: the last --limit events)"),
         stream: str | None = typer.Option(None, help="only this stream"),
         category: str | None = typer.Option(None, help="only this category"),
         limit: int = typer.Option(20, min=1, help="events per page"),
         follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new events"),
         ) -> None:
    """Print events as JSON lines (by position, stream or category)."""

    def work() -> int:
        import json

        from stackmedic.eventstore import open_store

        with open_store(dsn, read_only=True) as store:
            position = after if after is not None else max(0, store.head() - limit)
            if (stream or category) and after is None:  # its last events, not the log's
                recent = (store._select("stream = ? ORDER BY version DESC", (stream,), limit)
                          if stream else store._select(
                              "category = ? ORDER BY position DESC", (category,), limit))
                position = recent[-1].position - 1 if recent else store.head()
            while True:
                if stream:  # a page at a time: a long stream is never read whole
                    events = store._select("stream = ? AND position > ? ORDER BY position",
                                           (stream, position), limit)
                elif category:
                    events = store.read_category(category, after=position, limit=limit)
                else:
                    events = store.read_all(after=position, limit=limit)
                for e in events:
                    typer.echo(json.dumps({"position": e.position, "stream": e.stream,
                                           "version": e.version, "type": e.type,
                                           "occurred_at": e.occurred_at.isoformat(),
                                           "event_id": e.event_id, "data": e.data},
                                          default=str))
                    position = e.position
                if not follow:
                    return 0
                if not events:
                    store.wait_for_events(1.0)

    _run("tail", work)
