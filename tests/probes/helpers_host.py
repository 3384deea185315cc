"""Real faults for the host, process and fs tests: child processes and tiny tmpfs mounts.

Children are plain Python processes started from a program given as text; each
prints `ready` once its fault is in place (fds opened, port bound, memory touched),
so a test never races the child and never sleeps for a guessed duration.
"""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackmedic.doctor import Run
from stackmedic.findings import Finding
from stackmedic.testing import with_symptom

__all__ = ["child", "only", "tmpfs"]

_READY_WAIT_S = 20.0  # a safety net against a broken child, not a timing assertion


@contextlib.contextmanager
def child(program: str, *args: str, program_name: str | None = None,
          ) -> Iterator[subprocess.Popen[str]]:
    """Run `program` (Python source) with `args`, wait until it prints `ready`, kill it
    afterwards. The source goes to a file so the command line stays short and readable.
    With `program_name`, the interpreter runs through a symlink of that name, so the
    child's process name and argv[0] are that name (as for a real daemon)."""
    with tempfile.TemporaryDirectory(prefix="stackmedic-child-") as tmp:
        script = Path(tmp) / "child.py"
        script.write_text(program)
        executable = sys.executable
        if program_name is not None:
            executable = str(Path(tmp) / program_name)
            Path(executable).symlink_to(sys.executable)
        proc = subprocess.Popen([executable, str(script), *args], stdout=subprocess.PIPE,
                                text=True)
        try:
            assert proc.stdout is not None
            readable, _, _ = select.select([proc.stdout], [], [], _READY_WAIT_S)
            line = proc.stdout.readline() if readable else ""
            assert line.strip() == "ready", f"child did not get ready (said {line!r})"
            yield proc
        finally:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A fresh tmpfs mounted at `where` (skips the test when mounting is not allowed)."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); "
                    "these tests need root and mount permission")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def only(run: Run, symptom: str, **evidence: object) -> Finding:
    """The one finding with `symptom` (and these evidence values); fails listing them all."""
    found = [f for f in with_symptom(run.findings, symptom)
             if all(f.evidence.get(k) == v for k, v in evidence.items())]
    assert len(found) == 1, [(f.symptom, f.severity.value, f.summary) for f in run.findings]
    return found[0]
