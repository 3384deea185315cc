"""`stackmedic --help` start-up time beside a bare interpreter start (target < 0.3 s).

Medians of repeated runs, measured in the same run, so a noisy machine moves both.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
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
    ours = median_seconds([STACKMEDIC, "--help"])
    bare = median_seconds([sys.executable, "-c", "pass"])
    print(f"{'command':34} {'median s':>9}")
    print(f"{'stackmedic --help':34} {ours:9.3f}")
    print(f"{'python -c pass (floor)':34} {bare:9.3f}")
    print(f"ratio stackmedic/bare: {ours / bare:.1f}x; target < 0.300 s: "
          f"{'met' if ours < 0.3 else 'NOT met'}")


if __name__ == "__main__":
    main()
