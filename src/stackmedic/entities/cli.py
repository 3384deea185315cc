"""`stackmedic entities …`: scan stored entity rows (mounted by the lead's cli.py)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Timestamped entities: scan stored rows for timestamp and "
                       "validation problems.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Keeps `scan` a subcommand even while it is the only one."""


@app.command()
def scan(
    dsn: str = typer.Option(..., help="sqlite:///file.db or postgresql://… (read only)"),
    table: str = typer.Option(..., help="table holding the entities"),
    entity: str | None = typer.Option(None, help="module:Class to validate rows with"),
    id_column: str = typer.Option("id", help="column with the entity id"),
    created_column: str = typer.Option("created_at", help="creation timestamp column"),
    updated_column: str = typer.Option("updated_at", help="update timestamp column"),
    as_json: bool = typer.Option(False, "--json", help="print findings as JSON"),
) -> None:
    """Report naive, non-UTC and out-of-order timestamps, and failing validation rules."""
    import json

    from stackmedic.entities.scan import ScanOptions, load_entity, scan_table
    from stackmedic.findings import overall_status

    try:
        options = ScanOptions(id_column=id_column, created_column=created_column,
                              updated_column=updated_column,
                              entity=load_entity(entity) if entity else None)
        findings = scan_table(dsn, table, options)
    except Exception as err:  # the one place library errors become an exit code
        from stackmedic import redact

        typer.echo(f"entities scan: {redact.redact_text(str(err))}", err=True)
        raise typer.Exit(3) from None
    if as_json:
        typer.echo(json.dumps([f.to_dict() for f in findings], indent=2))
    else:
        for finding in findings:
            typer.echo(f"{finding.severity.value.upper():8} {finding.symptom:28} "
                       f"{finding.summary}")
    raise typer.Exit(overall_status(findings).exit_code)
