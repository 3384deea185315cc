"""Signature scan vs ripgrep (`rg -c -f`), and a memory bound, measured in one run.

A generated log of `--gb` GB (default 1) with ~3% of lines taken from signature
examples is scanned with the built-in pack plus a generated pack (100+ signatures
in all) by stackmedic on both cores and by `rg -c -f patterns` and
`LC_ALL=C grep -E -c -f patterns` on the same file and patterns; the matched-line
counts must agree. `--memory-gb 5` also scans a 5 GB file (the 1 GB file five
times over) and reports the peak resident memory of the scan's processes.

Peers: `apt-get install ripgrep` (bench extra). Files go to bench/out/ (git-ignored).
Usage: python bench/bench_logs_scan.py [--gb 1] [--memory-gb 5] [--no-grep]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _results import Results

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
SYMPTOMS = ["logs.error.database", "logs.error.auth", "logs.error.payment", "logs.error.timeout",
            "logs.error.memory", "logs.error.connection_pool",
            "logs.error.concurrency_conflict", "logs.error.projection_lag",
            "logs.error.circuit_open"]
SERVICES = ["billing", "ledger", "search", "catalog", "checkout", "inventory", "shipping",
            "pricing", "profile", "session", "mailer", "reports"]
VERBS = ["refused", "rejected", "unreachable", "degraded", "overloaded", "throttled"]


def make_pack(path: Path, count: int) -> None:
    """`count` extra signatures, mixing literal and regex patterns."""
    signatures = []
    for n in range(count):
        service = SERVICES[n % len(SERVICES)]
        verb = VERBS[n % len(VERBS)]
        signatures.append({
            "id": f"bench.sig{n:03d}", "symptom": SYMPTOMS[n % len(SYMPTOMS)],
            "description": f"{service} {verb} (generated)",
            "patterns": [f"{service} call (was )?{verb} with code E{n:04d}",
                         f"E{n:04d}: upstream {service} {verb} after [0-9]+ attempts"],
            "examples": [f"{service} call was {verb} with code E{n:04d}",
                         f"E{n:04d}: upstream {service} {verb} after 3 attempts"],
            "near_misses": [f"{service} call accepted with code E{n:04d}"],
        })
    path.write_text(yaml.safe_dump({"pack": "bench", "signatures": signatures}))


def make_log(path: Path, gigabytes: float, examples: list[str]) -> None:
    """A 32 MB block of varied lines, written until the file reaches `gigabytes`."""
    rng = random.Random(11)
    words = ["request", "served", "cache", "hit", "miss", "user", "order", "item", "query",
             "took", "ms", "status", "ok", "queued", "worker", "batch", "flushed"]
    lines = []
    size = 0
    while size < 32 << 20:
        at = f"2024-05-01T{rng.randrange(24):02d}:{rng.randrange(60):02d}:" \
             f"{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z"
        if rng.random() < 0.03:
            body = f"ERROR {rng.choice(examples)}"
        else:
            body = "INFO " + " ".join(rng.choice(words) for _ in range(rng.randrange(6, 14)))
            body += f" id={rng.randrange(10**9)} dur={rng.randrange(5000)}ms"
        line = f"{at} {body}\n"
        lines.append(line)
        size += len(line)
    block = "".join(lines).encode()
    with open(path, "wb") as f:
        for _ in range(int(gigabytes * (1 << 30)) // len(block) + 1):
            f.write(block)


def timed(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"},
                          timeout=3600)
    return time.perf_counter() - start, proc.stdout.strip()


def scan_in_child(path: Path, packs: list[str], workers: int = 0) -> tuple[float, int, int]:
    """Run the scan in a fresh interpreter so its peak memory is its own."""
    code = ("import sys, time, resource\n"
            "from stackmedic.logs.scan import scan_files\n"
            "from stackmedic.logs.signatures import load_packs\n"
            "sigs = load_packs(sys.argv[3:])\n"
            "w = int(sys.argv[2]) or None\n"
            "t = time.perf_counter()\n"
            "r = scan_files([sys.argv[1]], sigs, count_lines=False, workers=w)\n"
            "s = time.perf_counter() - t\n"
            "me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
            "rss = me + 2 * kids  # upper bound: this process and two workers at their peaks\n"
            "print(s, r.matched_lines, rss, r.engine, len(sigs))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path), str(workers), *packs],
                          capture_output=True, text=True, timeout=3600, check=True)
    secs, matched, rss, engine, count = proc.stdout.split()
    say(f"  (engine {engine}, {count} signatures)")
    return float(secs), int(matched), int(rss)


RESULTS = Results("log signature scan vs ripgrep")
say = RESULTS.say


def _burn(n: int) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - start


def cpu_scaling() -> float:
    """How much slower each of two CPU-bound processes runs than one alone: 1.0 on
    two free cores; more when the cores are shared with other work."""
    import multiprocessing

    alone = _burn(5_000_000)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pair = pool.map(_burn, [5_000_000, 5_000_000])
    return max(pair) / alone


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--memory-gb", type=float, default=0.0)
    parser.add_argument("--extra-signatures", type=int, default=90)
    parser.add_argument("--no-grep", action="store_true")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    from stackmedic.logs.signatures import load_packs

    OUT.mkdir(exist_ok=True)
    pack = OUT / "bench_pack.yaml"
    make_pack(pack, args.extra_signatures)
    signatures = load_packs([str(pack)])
    patterns = OUT / "bench_patterns.txt"
    patterns.write_text("".join(p + "\n" for s in signatures for p in s.patterns))
    log = OUT / f"scan_{args.gb:g}gb.log"
    if not log.exists():
        make_log(log, args.gb, [e for s in signatures for e in (*s.examples, *s.near_misses)])
    size = log.stat().st_size
    subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)  # warm the cache
    rg = shutil.which("rg")
    rg_secs, rg_count = timed([rg, "-c", "-f", str(patterns), str(log)]) if rg else (0.0, "")
    say(f"file {size / 2**30:.2f} GiB, {len(signatures)} signatures, "
        f"{sum(len(s.patterns) for s in signatures)} patterns; "
        f"two processes of pure Python here each run {cpu_scaling():.1f}x slower than one")
    if rg:
        say(f"ripgrep:    {rg_secs:.2f}s ({size / rg_secs / 2**20:,.0f} MiB/s), "
            f"{int(rg_count or 0):,} matched lines")
    for workers, label in ((1, "1 process"), (0, "all cores")):
        ours_secs, ours_count, rss = scan_in_child(log, [str(pack)], workers)
        say(f"stackmedic ({label}): {ours_secs:.2f}s ({size / ours_secs / 2**20:,.0f} MiB/s), "
            f"{ours_count:,} matched lines, peak RSS {rss / 1024:.0f} MiB"
            + (f" -> {rg_secs / ours_secs:.2f}x ripgrep" if rg else ""))
    if not args.no_grep:
        grep_secs, grep_count = timed(["grep", "-E", "-c", "-f", str(patterns), str(log)])
        agree = int(grep_count) == ours_count == int(rg_count or ours_count)
        say(f"grep -E:    {grep_secs:.2f}s, {int(grep_count):,} matched lines; counts "
              f"{'agree' if agree else 'DIFFER'}")
    if args.memory_gb:
        big = OUT / f"scan_{args.memory_gb:g}gb.log"
        with open(big, "wb") as f:
            for _ in range(max(1, round(args.memory_gb / args.gb))):
                with open(log, "rb") as part:
                    shutil.copyfileobj(part, f, 16 << 20)
        secs, matched, rss = scan_in_child(big, [str(pack)])
        say(f"memory: {big.stat().st_size / 2**30:.2f} GiB scanned in {secs:.1f}s, "
              f"{matched:,} matched lines, peak RSS {rss / 1024:.0f} MiB (bound: 500 MiB)")
        big.unlink()
    if args.record:
        RESULTS.record(" ".join([".venv/bin/python", f"bench/{Path(__file__).name}",
                                 *sys.argv[1:]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
