"""Template miner vs drain3 (default configuration), measured in one run.

1. Accuracy on ../shared/data/loghub2k, both miners scored by
   ../shared/tools/loghub_eval.py through the same per-line JSON interface.
2. Throughput on one 1,000,000-line input built from the loghub-2k messages with
   every digit run re-drawn at random (so lines are not simply repeated), both
   miners in this process, reading the same file.

Peers: `pip install drain3` (bench extra). Output: bench/out/ (git-ignored).
Usage: python bench/bench_logs_miner.py [--lines 1000000]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

from _results import Results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data" / "loghub2k"
EVAL = SHARED / "tools" / "loghub_eval.py"
OUT = HERE / "out"


def accuracy(cmd: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, str(EVAL), str(DATA), "--cmd", cmd, "--json"],
                          capture_output=True, text=True, timeout=1800)
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def messages() -> list[str]:
    out = []
    for path in sorted(DATA.glob("*/*_2k.log_structured_corrected.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            out += [row["Content"].replace("\n", " ") for row in csv.DictReader(f)]
    return out


def make_input(path: Path, lines: int) -> None:
    rng = random.Random(7)
    pool = messages()
    digits = re.compile(r"\d+")
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(lines):
            line = digits.sub(lambda m: str(rng.randrange(10 ** len(m.group()))), rng.choice(pool))
            f.write(line + "\n")


def time_ours(path: Path) -> tuple[float, int]:
    from stackmedic.logs.miner import mine_file

    start = time.perf_counter()
    result = mine_file(path)
    return time.perf_counter() - start, len(result.templates)


def time_drain3(path: Path) -> tuple[float, int]:
    from drain3 import TemplateMiner

    start = time.perf_counter()
    miner = TemplateMiner()
    with open(path, encoding="utf-8") as f:
        for line in f:
            miner.add_log_message(line.rstrip("\n"))
    return time.perf_counter() - start, len(miner.drain.clusters)


RESULTS = Results("template miner vs drain3")
say = RESULTS.say


def drain3_per_line(path: str) -> None:
    """The peer behind loghub_eval's --cmd: drain3 (default configuration) printing one
    JSON object per input line, like `stackmedic logs templates --per-line`."""
    from drain3 import TemplateMiner

    miner = TemplateMiner()
    with open(path, encoding="utf-8", errors="replace") as f:
        ids = [miner.add_log_message(line.rstrip("\n"))["cluster_id"] for line in f]
    templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    sys.stdout.writelines(json.dumps({"template_id": i, "template": templates[i]}) + "\n"
                          for i in ids)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--drain3-per-line":
        drain3_per_line(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    python = sys.executable
    if not args.skip_accuracy:
        ours = accuracy(f"{python} -m stackmedic.logs templates --per-line --format jsonl "
                        "{input}")
        peer = accuracy(f"{python} {Path(__file__).resolve()} --drain3-per-line {{input}}")
        say(f"{'dataset':10s} {'ours GA':>8s} {'ours PA':>8s} {'drain3 GA':>10s} "
              f"{'drain3 PA':>10s}")
        for name, row in ours["datasets"].items():  # type: ignore[attr-defined]
            other = peer["datasets"][name]  # type: ignore[index]
            say(f"{name:10s} {row['GA']:8.4f} {row['PA']:8.4f} {other['GA']:10.4f} "
                  f"{other['PA']:10.4f}")
        a, b = ours["average"], peer["average"]
        say(f"{'average':10s} {a['GA']:8.4f} {a['PA']:8.4f} {b['GA']:10.4f} "  # type: ignore[index]
              f"{b['PA']:10.4f}")  # type: ignore[index]
    path = OUT / f"miner_{args.lines}.log"
    if not path.exists():
        make_input(path, args.lines)
    ours_s, ours_n = time_ours(path)
    peer_s, peer_n = time_drain3(path)
    say(f"throughput on {args.lines:,} lines: ours {ours_s:.2f}s "
          f"({args.lines / ours_s:,.0f} lines/s, {ours_n} templates), drain3 {peer_s:.2f}s "
          f"({args.lines / peer_s:,.0f} lines/s, {peer_n} clusters): {peer_s / ours_s:.1f}x")
    if args.record:
        RESULTS.record(" ".join([".venv/bin/python", f"bench/{Path(__file__).name}",
                                 *sys.argv[1:]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
