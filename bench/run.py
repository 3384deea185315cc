"""Run every benchmark (`bench/bench_*.py`), or those named: `python bench/run.py startup`;
`python bench/run.py --record` also appends each result to bench/RESULTS.md.

Each benchmark prints its own table with the peer measured in the same run and the
ratio; results worth keeping go to bench/RESULTS.md with the date and command.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    """`names` pick benchmarks by substring; `--flags` (e.g. --record) go to each script."""
    names = [a for a in argv if not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if any(n in s.stem for n in names)]
    failed = 0
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        failed += subprocess.run([sys.executable, str(script), *flags],
                                 check=False).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
