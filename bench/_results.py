"""Printing a benchmark's lines and appending them to bench/RESULTS.md as one section."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


class Results:
    """Collects what a benchmark says, then records it under a dated heading."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.lines: list[str] = []

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)

    def record(self, command: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write(f"\n## {self.title} ({stamp})\n\nCommand: `{command}`  \n"
                      f"Machine: {platform.machine()}, Python {platform.python_version()}, "
                      f"{os.cpu_count()} cores, load average {load}\n\n```\n"
                      + "\n".join(self.lines) + "\n```\n")
