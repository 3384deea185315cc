"""Regenerate the docs that are derived from the code: `python docs/generate.py`.

- docs/cli.md from every command's `--help`;
- docs/checks-reference.md from the check registry (kinds, fields, rules, thresholds).

tests/core/test_docs.py fails when either is stale, so the docs cannot drift.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).parent


def cli_reference() -> str:
    import contextlib
    import io
    import os

    from stackmedic.cli import _LAZY_GROUPS, _command

    os.environ["COLUMNS"] = "100"  # help text wraps the same everywhere
    group = _command()
    paths: list[list[str]] = [[]]
    out = ["# CLI reference", "", "Generated from `--help` by `python docs/generate.py`.", ""]
    for name in group.list_commands(None):  # type: ignore[arg-type]
        command = group.get_command(None, name)  # type: ignore[arg-type]
        subs = getattr(command, "commands", None)
        paths.append([name])
        if subs:
            paths.extend([name, sub] for sub in sorted(subs))
    for path in paths:
        if path and path[0] in _LAZY_GROUPS:
            try:
                __import__(_LAZY_GROUPS[path[0]][0])
            except ImportError:
                continue
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            group.main([*path, "--help"], prog_name="stackmedic", standalone_mode=False)
        title = " ".join(["stackmedic", *path])
        out += [f"## {title}", "", "```", buffer.getvalue().rstrip(), "```", ""]
    return "\n".join(out)


def checks_reference() -> str:
    from stackmedic.catalog import check_rows
    from stackmedic.checks import all_probes

    out = ["# Checks reference", "",
           "Generated from the check registry by `python docs/generate.py`.", ""]
    for kind, probe in sorted(all_probes().items()):
        if not probe.config.__module__.startswith("stackmedic."):
            continue
        out += [f"## `{kind}`: {probe.description}", ""]
        fields = [(n, f) for n, f in probe.config.model_fields.items()
                  if n not in ("kind", "depends_on", "logs", "thresholds", "timeout",
                               "description")]
        if fields:
            out += ["| field | type | default | meaning |", "|---|---|---|---|"]
            for name, field in fields:
                out.append(f"| `{name}` | {_type(field.annotation)} | {_default(field)} | "
                           f"{(field.description or '').replace('|', '/')} |")
            out.append("")
        if probe.default_ports:
            ports = ", ".join(map(str, probe.default_ports))
            out += [f"Autodiscovered on 127.0.0.1 port(s) {ports}.", ""]
        out += ["| check | symptoms | default thresholds | what it does |", "|---|---|---|---|"]
        for row in check_rows(kind):
            limits = "<br>".join(
                f"{sid}: warn {t['warning']}, crit {t['critical']}"
                f"{' ' + t['unit'] if t['unit'] else ''}"
                f"{' (lower is worse)' if t['direction'] == 'below' else ''}"
                for sid, t in row["thresholds"].items())
            symptoms = "<br>".join(f"`{s}`" for s in row["symptoms"])
            out.append(f"| `{row['check']}` | {symptoms} | {limits} | {row['description']} |")
        out.append("")
    return "\n".join(out)


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("|", "or")


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    return f"`{value!r}`" if value not in (None, [], {}) else ""


GENERATED = {"cli.md": cli_reference, "checks-reference.md": checks_reference}


def main() -> int:
    for name, build in GENERATED.items():
        (DOCS / name).write_text(build() + "\n", encoding="utf-8")
        print(f"wrote docs/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
