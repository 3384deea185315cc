"""Docs can't drift: generated references are current and every command is documented."""

import importlib.util
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["cli.md", "checks-reference.md"])
def test_generated_docs_are_current(name: str) -> None:
    """docs/cli.md and docs/checks-reference.md match the code (run docs/generate.py)."""
    expected = _generator().GENERATED[name]() + "\n"
    actual = (DOCS / name).read_text(encoding="utf-8")
    # The test-only `fake` kind is registered in this process; it is not documented.
    assert actual == expected, f"docs/{name} is stale: run `python docs/generate.py`"


def test_every_command_has_help_text() -> None:
    """Each command and sub-command has a help line."""
    from stackmedic.cli import _command

    group = _command()
    for name in group.list_commands(None):
        command = group.get_command(None, name)
        assert command.get_short_help_str(), name


def test_relative_links_in_the_docs_lead_somewhere() -> None:
    """Every relative link in README.md and docs/*.md names a file that exists."""
    import re

    root = Path(__file__).resolve().parents[2]
    broken = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(root)} -> {target}")
    assert not broken, broken
