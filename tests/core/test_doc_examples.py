"""Documented examples run: the ```python blocks of the library guides, in order, per doc.

A block that cannot run here (it needs an external server, or is a fragment) is preceded
in the doc by `<!-- not run: reason -->`; it is reported as skipped, never dropped silently.

Stand-ins for the reader's own code (a `gateway`, a `fetch`) go in the doc itself, in a
setup comment just before the example that calls them; Markdown does not render it, and
its Python runs in document order with the blocks:

    <!-- setup: why the stand-ins look the way they do
    def fetch(url): return b"ok"
    -->

Keep stand-ins trivial (return a value, fail once, sleep briefly), so the example
exercises the real library.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = ("resilience.md", "observe.md", "entities.md", "eventstore.md")
MARKER = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")
SETUP = re.compile(r"<!--\s*setup:")
TIMEOUT = 10  # seconds per doc, a hang guard: each doc takes under 1 s

# Runs in a fresh interpreter: one namespace for the doc's blocks, in order. Each block is
# compiled padded to its line in the doc, so tracebacks point at the doc itself; top-level
# `await` is allowed and such a block runs under asyncio.run.
RUNNER = """
import ast, asyncio, json, sys, traceback
doc, blocks = json.load(sys.stdin)
namespace = {"__name__": "__doc_example__"}
for line, source in blocks:
    try:
        code = compile("\\n" * (line - 1) + source, doc, "exec",
                       flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    except BaseException as exc:
        print(json.dumps({"line": line, "error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc()}), file=sys.stderr)
        sys.exit(1)
"""


@dataclass(frozen=True)
class Block:
    """One python block or setup comment: the doc line its code starts on, why it is not run."""

    line: int
    source: str
    skip: str | None


def blocks(page: str) -> list[Block]:
    """The ```python blocks and setup comments of a doc, in order, each block with the
    `not run` reason written just before it."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        if SETUP.match(lines[index].strip()):
            start = index + 1
            end = lines.index("-->", start)
            found.append(Block(start + 1, "\n".join(lines[start:end]) + "\n", None))
            index = end
        elif lines[index].strip() == "```python":
            start = index + 1
            end = lines.index("```", start)
            before = next((text for text in reversed(lines[:index]) if text.strip()), "")
            marker = MARKER.search(before)
            found.append(Block(start + 1, "\n".join(lines[start:end]) + "\n",
                               marker.group(1) if marker else None))
            index = end
        index += 1
    return found


@pytest.mark.parametrize("page", PAGES)
def test_doc_examples_run(page: str, tmp_path: Path) -> None:
    """Every unmarked python block of the doc runs, in order, in one namespace."""
    runnable = [(block.line, block.source) for block in blocks(page) if block.skip is None]
    assert runnable, f"docs/{page} has no runnable python block"
    try:
        done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps([page, runnable]),
                              capture_output=True, text=True, cwd=tmp_path, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"docs/{page}: its examples did not finish in {TIMEOUT} s", pytrace=False)
    if done.returncode:
        pytest.fail(_failure(page, done.stderr), pytrace=False)


def _failure(page: str, stderr: str) -> str:
    """The failing block's line and exception, or the raw stderr if the runner itself died."""
    try:
        failure = json.loads(stderr.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return f"docs/{page}: the example runner died:\n{stderr}"
    return (f"docs/{page}, block at line {failure['line']}: {failure['error']}\n"
            f"{failure['traceback']}")


@pytest.mark.parametrize("page, line, reason", [
    (page, block.line, block.skip) for page in PAGES for block in blocks(page) if block.skip
])
def test_marked_doc_examples_are_skipped(page: str, line: int, reason: str) -> None:
    """Blocks marked `not run` are listed as skips with their reason, not dropped silently."""
    pytest.skip(f"docs/{page}:{line} not run: {reason}")
