"""Circuit breakers side by side: stackmedic against pybreaker, circuitbreaker, aiobreaker,
purgatory. Run: `.venv/bin/python bench/bench_resilience.py [--record]` (peers are the
`bench` extra; missing ones are skipped); `--record` appends the table to bench/RESULTS.md.

Measures, in one process so the machine's state is shared:
  success   ns of overhead per successful sync call: `lambda: breaker.call(f)` minus
            `lambda: f()` (the same call site, so the harness's lambda cancels out)
  async     ns of overhead per successful awaited call (minus the bare await)
  open      ns per rejected call while open, caught by the caller, minus a function
            that raises at once called from the same site (`lambda: boom()`)
  trials    how many of 50 concurrent coroutines get through a half-open breaker
  blocks    allocated memory blocks left after 200,000 rejected calls
Every subject, peers included, is driven through the same kind of lambda. Numbers are
medians of REPEAT rounds of process CPU time (not wall time: on a shared machine, time
spent descheduled says nothing about the code); the rounds go round-robin over all
subjects so a burst of load from other jobs hits every library alike. The last column
is each library's overhead divided by stackmedic's, from the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import statistics
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from _results import Results

N = 50_000
# issue 6: success-path overhead sync and async, and the open fast-fail, in ns
TARGETS = {"sync": 300, "async": 600, "open": 500}
REPEAT = 21


def once_ns(func: Callable[[], Any], n: int = N) -> float:
    return timeit.timeit(func, number=n, timer=time.process_time) / n * 1e9


def once_async_ns(make: Callable[[], Awaitable[Any]], n: int = N // 2) -> float:
    async def loop() -> float:
        start = time.process_time()
        for _ in range(n):
            await make()
        return (time.process_time() - start) / n * 1e9

    return asyncio.run(loop())


def medians(jobs: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Median of REPEAT rounds per job, the rounds interleaved across jobs."""
    samples: dict[str, list[float]] = {key: [] for key in jobs}
    for _ in range(REPEAT):
        for key, job in jobs.items():
            samples[key].append(job())
    return {key: statistics.median(values) for key, values in samples.items()}


def noop() -> int:
    return 1


async def anoop() -> int:
    return 1


def boom() -> None:
    raise ConnectionError


class Peer:
    """How to drive one library: sync call, async call, trip it, reject-call."""

    def __init__(self, name: str, sync: Callable[[], Any] | None,
                 asyncf: Callable[[], Awaitable[Any]] | None,
                 rejected: Callable[[], Any] | None, trials: Callable[[], int] | None) -> None:
        self.name, self.sync, self.asyncf = name, sync, asyncf
        self.rejected, self.trials = rejected, trials


def catching(call: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:  # noqa: SIM105 - cheaper than contextlib.suppress in a timed loop
            call()
        except Exception:
            pass
    return run


async def half_open_trials(acall: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
                           ) -> int:
    """Fire 50 coroutines at a breaker whose wait is over; count how many ran the call."""
    admitted = 0
    gate = asyncio.Event()

    async def trial() -> int:
        nonlocal admitted
        admitted += 1
        await gate.wait()
        return 1

    async def one() -> None:
        with contextlib.suppress(Exception):
            await acall(trial)

    tasks = [asyncio.create_task(one()) for _ in range(50)]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(*tasks)
    return admitted


def ours() -> Peer:
    from stackmedic.resilience import BreakerConfig, CircuitBreaker

    ok = CircuitBreaker("ok")
    aok = CircuitBreaker("aok")
    dead = CircuitBreaker("dead", BreakerConfig(consecutive_failures=1, wait_duration=3600))
    catching(lambda: dead.call(boom))()

    def trials() -> int:
        b = CircuitBreaker("t", BreakerConfig(consecutive_failures=1, wait_duration=0.01,
                                              half_open_calls=1))
        catching(lambda: b.call(boom))()
        time.sleep(0.02)
        return asyncio.run(half_open_trials(b.call_async))

    return Peer("stackmedic", lambda: ok.call(noop), lambda: aok.call_async(anoop),
                catching(lambda: dead.call(noop)), trials)


def pybreaker_peer() -> Peer:
    import pybreaker

    ok = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=3600)
    dead = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600)
    catching(lambda: dead.call(boom))()
    return Peer("pybreaker", lambda: ok.call(noop), None, catching(lambda: dead.call(noop)),
                None)


def circuitbreaker_peer() -> Peer:
    import circuitbreaker  # type: ignore[import-untyped]

    ok = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=3600)(noop)
    aok = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=3600)(anoop)
    dead_cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=3600)
    dead, dead_boom = dead_cb(noop), dead_cb(boom)
    catching(dead_boom)()

    def trials() -> int:
        cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=0.01)
        catching(cb(boom))()
        time.sleep(0.02)
        return asyncio.run(half_open_trials(lambda f: cb(f)()))

    return Peer("circuitbreaker", lambda: ok(), lambda: aok(), catching(lambda: dead()), trials)


def aiobreaker_peer() -> Peer:
    import aiobreaker  # type: ignore[import-untyped]

    ok = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(hours=1))
    aok = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(hours=1))
    dead = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=timedelta(hours=1))
    catching(lambda: dead.call(boom))()

    def trials() -> int:
        b = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=timedelta(seconds=0.01))
        catching(lambda: b.call(boom))()
        time.sleep(0.02)
        return asyncio.run(half_open_trials(b.call_async))

    return Peer("aiobreaker", lambda: ok.call(noop), lambda: aok.call_async(anoop),
                catching(lambda: dead.call(noop)), trials)


def purgatory_peer() -> Peer:
    from purgatory import AsyncCircuitBreakerFactory, SyncCircuitBreakerFactory

    factory = SyncCircuitBreakerFactory(default_threshold=5, default_ttl=3600)

    def ok() -> int:
        with factory.get_breaker("ok"):
            return noop()

    dead_factory = SyncCircuitBreakerFactory(default_threshold=1, default_ttl=3600)

    def dead(func: Callable[[], Any] = noop) -> Any:
        with dead_factory.get_breaker("dead"):
            return func()

    catching(lambda: dead(boom))()
    afactory = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=3600)

    async def aok() -> int:
        async with await afactory.get_breaker("ok"):
            return await anoop()

    def trials() -> int:
        async def run() -> int:
            f = AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=0.01)

            async def call(func: Callable[[], Awaitable[Any]]) -> Any:
                async with await f.get_breaker("t"):
                    return await func()

            async def failing() -> None:
                boom()

            with contextlib.suppress(Exception):
                await call(failing)
            await asyncio.sleep(0.02)
            return await half_open_trials(call)

        return asyncio.run(run())

    return Peer("purgatory", lambda: ok(), lambda: aok(), catching(lambda: dead()), trials)


def blocks_after(rejected: Callable[[], Any], n: int = 200_000) -> int:
    for _ in range(1000):
        rejected()
    before = sys.getallocatedblocks()
    for _ in range(n):
        rejected()
    return sys.getallocatedblocks() - before


def main(record: bool) -> None:
    peers: list[Peer] = []
    for factory in (ours, pybreaker_peer, circuitbreaker_peer, aiobreaker_peer, purgatory_peer):
        try:
            peers.append(factory())
        except ImportError as err:
            print(f"skipped {factory.__name__}: {err}")
    jobs: dict[str, Callable[[], float]] = {
        "bare": lambda: once_ns(lambda: noop()),
        "abare": lambda: once_async_ns(lambda: anoop()),
        "raise": lambda: once_ns(catching(lambda: boom()), N // 4),
    }
    for peer in peers:
        if peer.sync:
            jobs[peer.name + " sync"] = functools.partial(once_ns, peer.sync)
        if peer.asyncf:
            jobs[peer.name + " async"] = functools.partial(once_async_ns, peer.asyncf)
        if peer.rejected:
            jobs[peer.name + " open"] = functools.partial(once_ns, peer.rejected, N // 4)
    med = medians(jobs)
    out = Results("circuit breakers vs pybreaker, circuitbreaker, aiobreaker, purgatory")
    out.say(f"python {sys.version.split()[0]}; {REPEAT} rounds, medians of CPU time; "
          f"call site {med['bare']:.0f} ns, await {med['abare']:.0f} ns, "
          f"raise+catch {med['raise']:.0f} ns")
    out.say(f"{'library':<16}{'success ns':>12}{'async ns':>10}{'open ns':>10}{'trials/50':>11}"
          f"{'blocks':>9}   x stackmedic (sync/async/open)")
    base = {"sync": med["bare"], "async": med["abare"], "open": med["raise"]}
    ours_ = {kind: med[f"{peers[0].name} {kind}"] - base[kind] for kind in base}
    for peer in peers:
        row = {kind: med[f"{peer.name} {kind}"] - base[kind]
               if f"{peer.name} {kind}" in med else None for kind in base}
        trials = peer.trials() if peer.trials else None
        blocks = blocks_after(peer.rejected) if peer.rejected else None
        ratios = "/".join("-" if row[k] is None else f"{row[k] / ours_[k]:.1f}" for k in base)
        out.say(f"{peer.name:<16}{fmt(row['sync']):>12}{fmt(row['async']):>10}"
              f"{fmt(row['open']):>10}{fmt(trials):>11}{fmt(blocks):>9}   {ratios}")
    verdicts = ", ".join(f"{kind} {ours_[kind]:.0f} <= {limit} ns "
                         f"{'met' if ours_[kind] <= limit else 'NOT met'}"
                         for kind, limit in TARGETS.items())
    out.say(f"stackmedic targets: {verdicts}")
    if record:
        out.record("python bench/bench_resilience.py --record")


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    main("--record" in sys.argv[1:])
