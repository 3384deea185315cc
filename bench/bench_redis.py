"""Bench: the Redis check on a server with 1,000,000 keys, and big-key sampling side by
side with `redis-cli --bigkeys` and `--memkeys` in the same run.

    .venv/bin/python bench/bench_redis.py [--keys 1000000] [--runs 3] [--record]

Starts a throwaway redis-server, fills it with DEBUG POPULATE and plants three big
keys (a 50 MB list, a 100k-field hash, a 100k-member sorted set), then measures:

1. the whole doctor run for one `redis` component with big-key sampling off
   (goal, issue 4: under 1 s; the 0.5 s sampling interval is part of it);
2. the run with the default sampling budget (max_keys 10,000, 1 s): bounded, and the
   run with max_keys above the key count so that only the 1 s time budget stops it;
3. a full big-key scan by the collector (every key, TYPE + MEMORY USAGE pipelined)
   against `redis-cli --bigkeys` and `--memkeys` over the same data: time ratio and
   whether each found the planted keys.

--record appends the result to bench/RESULTS.md. Needs redis-server and redis-cli
(apt: redis-server, redis-tools).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures

from tests.fixtures.redis import RedisServer

PLANTED = ("planted:list", "planted:hash", "planted:zset")


def fill(server: RedisServer, keys: int) -> None:
    """`keys` small strings plus the three planted big keys."""
    import redis

    client = redis.Redis(port=server.port, socket_timeout=300)
    client.execute_command("DEBUG", "POPULATE", keys - len(PLANTED), "key", 32)
    pipe = client.pipeline(transaction=False)
    for batch in range(100):
        pipe.rpush("planted:list", *(["e" * 500] * 1000))
        pipe.hset("planted:hash", mapping={f"f{batch}:{i}": "v" * 100 for i in range(1000)})
        pipe.zadd("planted:zset", {f"m{batch}:{i}": i for i in range(1000)})
    pipe.execute()
    client.execute_command("SLOWLOG", "RESET")  # the fill itself is slow; not the subject
    client.close()


def doctor(url: str, **fields: Any) -> tuple[float, dict[str, Any], list[str]]:
    """Wall time of one doctor run, its collector facts and its problem summaries."""
    from stackmedic.testing import run_components

    start = time.perf_counter()
    run = run_components({"cache": {"kind": "redis", "url": url, **fields}}, deadline=600)
    elapsed = time.perf_counter() - start
    return elapsed, run.facts["cache"]["server"], [f.summary for f in run.findings
                                                    if f.is_problem]


def redis_cli(port: int, mode: str) -> tuple[float, set[str]]:
    """Wall time of `redis-cli --bigkeys|--memkeys` and which planted keys it named."""
    start = time.perf_counter()
    out = subprocess.run(["redis-cli", "-p", str(port), mode], capture_output=True, text=True,
                         check=True).stdout
    return time.perf_counter() - start, {key for key in PLANTED if key in out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    import redis.utils

    server = RedisServer("--enable-debug-command", "yes")
    try:
        start = time.perf_counter()
        fill(server, args.keys)
        print(f"filled {args.keys} keys in {time.perf_counter() - start:.1f} s", flush=True)
        quick = [doctor(server.url, max_keys=0) for _ in range(args.runs)]
        bounded = doctor(server.url)
        timed = doctor(server.url, max_keys=args.keys * 2, bigkey_budget_s=1.0)
        full = doctor(server.url, max_keys=args.keys * 2, bigkey_budget_s=500, timeout=550)
        bigkeys = redis_cli(server.port, "--bigkeys")
        memkeys = redis_cli(server.port, "--memkeys")
    finally:
        server.destroy()
    scan = full[1]["bigkeys"]
    found = {k["key"] for k in scan["largest"]} & set(PLANTED)
    sample = bounded[1]["bigkeys"]
    clock = timed[1]["bigkeys"]
    lines = [
        f"- server: {args.keys:,} keys (3 planted big keys), redis-py hiredis parser: "
        f"{redis.utils.HIREDIS_AVAILABLE}",
        f"- doctor run, big-key sampling off: median {statistics.median(q[0] for q in quick):.2f}"
        f" s (runs: {', '.join(f'{q[0]:.2f}' for q in quick)}; goal < 1 s); problems: "
        f"{sorted({p for q in quick for p in q[2]}) or 'none'}",
        f"- doctor run, default sampling (max_keys 10,000, budget 1 s): {bounded[0]:.2f} s, "
        f"scan {sample['elapsed_s']:.2f} s over {sample['scanned']:,} keys "
        f"(complete: {sample['complete']})",
        f"- doctor run, time budget only (max_keys {args.keys * 2:,}, budget 1 s): "
        f"{timed[0]:.2f} s, scan {clock['elapsed_s']:.2f} s over {clock['scanned']:,} keys "
        f"(complete: {clock['complete']}; bounded: {clock['elapsed_s'] <= 1.5})",
        f"- full scan by stackmedic (TYPE + MEMORY USAGE, SCAN COUNT 500): {scan['elapsed_s']:.1f}"
        f" s for {scan['scanned']:,} keys; planted keys found: {len(found)}/3",
        f"- redis-cli --bigkeys: {bigkeys[0]:.1f} s; planted keys named: {len(bigkeys[1])}/3",
        f"- redis-cli --memkeys: {memkeys[0]:.1f} s; planted keys named: {len(memkeys[1])}/3",
        f"- ratio stackmedic full scan / --memkeys: {scan['elapsed_s'] / memkeys[0]:.2f}x, "
        f"/ --bigkeys: {scan['elapsed_s'] / bigkeys[0]:.2f}x",
    ]
    print("\n".join(lines))
    if args.record:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        with open(Path(__file__).with_name("RESULTS.md"), "a", encoding="utf-8") as out:
            out.write(f"\n## Redis check over {args.keys:,} keys ({now})\n\n"
                      f"Command: `.venv/bin/python bench/bench_redis.py --record`  \n"
                      f"Machine: {platform.machine()}, Python {platform.python_version()}, "
                      f"load average {os.getloadavg()[0]:.1f} (2 shared cores)\n\n"
                      + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
