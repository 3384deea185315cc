"""`stackmedic --help` start-up time beside a bare interpreter start (target < 0.3 s).

Medians of repeated runs, measured in the same run, so a noisy machine moves both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

RUNS = 15
STACKMEDIC = str(Path(sys.executable).with_name("stackmedic"))


def median_seconds(cmd: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    ours = median_seconds([STACKMEDIC, "--help"])
    bare = median_seconds([sys.executable, "-c", "pass"])
    verdict = "met" if ours < 0.3 else "NOT met"
    lines = [f"- `stackmedic --help`: median {ours:.3f} s over {RUNS} runs",
             f"- peer, `python -c pass` (interpreter floor): median {bare:.3f} s",
             f"- ratio stackmedic/bare: {ours / bare:.1f}x; target < 0.300 s: {verdict}",
             f"- load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"]
    print("\n".join(lines))
    if args.record:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as out:
            out.write(f"\n## stackmedic --help start-up ({stamp})\n\n"
                      f"Command: `.venv/bin/python bench/bench_startup.py --record`\n\n"
                      + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
