"""Bench: `run_doctor` over 1,000 `http` components served locally.

    .venv/bin/python bench/bench_doctor_http.py [--components 1000] [--runs 3] [--record]

Starts an asyncio HTTP/1.1 server (keep-alive, any path answers 200 JSON) in a
subprocess, builds a stack of N `http` components (default 3 samples each), and times
the doctor (median of --runs). As a peer it times a plain `httpx.AsyncClient` gather
loop making the same number of GETs with the same concurrency, and prints the ratio.
The goal (issue 2): under 3 s of wall time for 1,000 components on a 2-core machine.
--record appends the result to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stackmedic.doctor import Run

SERVER = r"""
import asyncio, sys
BODY = b'{"status":"ok"}'
RESP = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)

class Http(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.transport.write(RESP)

async def main():
    server = await asyncio.get_running_loop().create_server(Http, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def doctor(port: int, components: int, deadline: float) -> tuple[float, Run]:
    import yaml

    from stackmedic.config import Stack, parse_stack
    from stackmedic.doctor import run_doctor

    doc = {"stack": "bench", "components": {
        f"svc{i}": {"kind": "http", "url": f"http://127.0.0.1:{port}/svc/{i}"}
        for i in range(components)}}
    stack: Stack = parse_stack(yaml.safe_dump(doc), "<bench>")
    start = time.perf_counter()
    run = run_doctor(stack, deadline=deadline)
    return time.perf_counter() - start, run


def time_doctor(port: int, components: int) -> float:
    elapsed, run = doctor(port, components, deadline=30)
    bad = [f for f in run.findings if f.is_problem]
    if bad:
        raise SystemExit(f"bench run had {len(bad)} problems, e.g. {bad[0].summary}")
    return elapsed


def time_silent() -> tuple[float, str]:
    """The CLI, as a user runs it (`stackmedic doctor --config F --deadline 3`, process
    start included), against a server that accepts connections and never answers."""
    import json
    import tempfile

    with socket.socket() as silent, tempfile.TemporaryDirectory() as tmp:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        config = Path(tmp) / "stackmedic.yaml"
        config.write_text(f"stack: silent\ncomponents:\n  api: {{kind: http, url: "
                          f"'http://127.0.0.1:{silent.getsockname()[1]}/'}}\n")
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "stackmedic", "doctor", "--config",
                               str(config), "--deadline", "3", "--format", "json"],
                              capture_output=True, text=True, timeout=30)
        elapsed = time.perf_counter() - start
    findings = json.loads(done.stdout)["findings"]
    finding = next(f for f in findings if f["severity"] not in ("ok", "info"))
    return elapsed, f"{finding['severity']} {finding['symptom']} (exit {done.returncode})"


async def httpx_peer(port: int, requests: int, concurrency: int) -> float:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                response = await client.get(f"http://127.0.0.1:{port}/svc/{i % 1000}")
                response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--components", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    from stackmedic.probes._fetch import _PER_ORIGIN as _CONCURRENCY

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        doctor = [time_doctor(port, args.components) for _ in range(args.runs)]
        requests = args.components * 3  # the doctor's default: 3 samples per component
        peer = [asyncio.run(httpx_peer(port, requests, _CONCURRENCY)) for _ in range(args.runs)]
        silent, verdict = time_silent()
    finally:
        server.terminate()
        server.wait(5)
    d, p = statistics.median(doctor), statistics.median(peer)
    lines = [
        f"doctor, {args.components} http components x 3 samples: median {d:.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in doctor)})",
        f"peer, httpx.AsyncClient gather of {requests} GETs (concurrency {_CONCURRENCY}): "
        f"median {p:.2f} s",
        f"ratio peer/doctor: {p / d:.1f}x (the doctor also runs rules, remedies, correlation)",
        f"never-answering server, `stackmedic doctor --deadline 3` (CLI, process start "
        f"included): returned in {silent:.2f} s with {verdict}",
    ]
    print("\n".join(lines))
    if args.record:
        results = Path(__file__).with_name("RESULTS.md")
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        section = (f"\n## doctor over {args.components} HTTP endpoints ({stamp})\n\n"
                   f"Command: `.venv/bin/python bench/bench_doctor_http.py --record`  \n"
                   f"Machine: {platform.machine()}, Python {platform.python_version()}\n\n"
                   + "".join(f"- {line}\n" for line in lines))
        with open(results, "a", encoding="utf-8") as out:
            out.write(section)


if __name__ == "__main__":
    main()
