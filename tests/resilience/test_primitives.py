"""Fallback, degradation levels, bulkhead, rate limiter, time limiter and the pipeline."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from stackmedic.observe import LatencyTracker
from stackmedic.resilience import (
    BreakerConfig,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    DegradationManager,
    Fallback,
    Level,
    OperationTimeoutError,
    RateLimitedError,
    RateLimiter,
    Retry,
    TimeLimiter,
    pipeline,
)


def down(*_args: object) -> str:
    raise ConnectionError("down")


def test_fallback_serves_last_good_result_within_ttl_then_default() -> None:
    """A failure returns the cached result for the same arguments, then the default."""
    now = [0.0]
    fallback: Fallback[str] = Fallback("recs", cache_ttl=10, default="none",
                                       clock=lambda: now[0])
    assert fallback.call(lambda user: f"recs-{user}", 1) == "recs-1"
    assert fallback.call(down, 1) == "recs-1"
    assert fallback.call(down, 2) == "none"
    now[0] = 11
    assert fallback.call(down, 1) == "none"
    assert fallback.fallbacks == 3


def test_fallback_handler_and_reraise_without_fallback() -> None:
    """A handler gets the error and arguments; with nothing to fall back on, it re-raises."""
    handled: Fallback[str] = Fallback("x", handler=lambda exc, arg: f"{type(exc).__name__}:{arg}")
    assert handled.call(down, 7) == "ConnectionError:7"
    with pytest.raises(ConnectionError):
        Fallback[str]("x").call(down)
    with pytest.raises(KeyError):
        Fallback("x", default="d", on=(ConnectionError,)).call(lambda: {}["k"])


def test_degradation_levels_gate_features() -> None:
    """Features stay on down to their level; maintenance turns everything off."""
    manager = DegradationManager({"recommendations": Level.FULL, "checkout": Level.MINIMAL})
    assert manager.enabled("recommendations") and manager.enabled("checkout")
    manager.set_level("degraded")
    assert not manager.enabled("recommendations") and manager.enabled("checkout")
    assert manager.metrics()["disabled_features"] == ["recommendations"]
    manager.set_level(Level.MAINTENANCE)
    assert not manager.enabled("checkout")
    with pytest.raises(KeyError):
        manager.set_level("broken")


def test_bulkhead_bounds_concurrent_threads_and_rejects_beyond_the_wait_queue() -> None:
    """With 2 slots and 1 waiting place, of 5 simultaneous threads 3 run and 2 are turned away."""
    bulkhead = Bulkhead("db", max_concurrent=2, max_waiting=1, max_wait=10)
    release = threading.Event()
    running: list[int] = []
    peak = []
    outcomes: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        with lock:
            running.append(1)
            peak.append(len(running))
        release.wait(10)
        with lock:
            running.pop()

    def caller() -> None:
        try:
            bulkhead.call(work)
            outcomes.append("ran")
        except BulkheadFullError:
            outcomes.append("rejected")

    threads = [threading.Thread(target=caller) for _ in range(5)]
    for t in threads:
        t.start()
    while outcomes.count("rejected") < 2:
        time.sleep(0.01)
    assert bulkhead.metrics()["waiting"] == 1
    release.set()
    for t in threads:
        t.join(10)
    assert sorted(outcomes) == ["ran"] * 3 + ["rejected"] * 2
    assert max(peak) == 2
    assert bulkhead.metrics()["in_use"] == 0


def test_bulkhead_waiting_coroutine_times_out_and_a_released_slot_is_handed_over() -> None:
    """A coroutine waits at most max_wait; a slot freed meanwhile goes to the next waiter."""

    async def main() -> tuple[str, str]:
        bulkhead = Bulkhead("api", max_concurrent=1, max_waiting=2, max_wait=0.05)
        await bulkhead.acquire_async()
        try:
            await bulkhead.acquire_async()
            first = "got"
        except BulkheadFullError:
            first = "timed out"
        bulkhead.max_wait = 10
        waiter = asyncio.create_task(bulkhead.acquire_async())
        await asyncio.sleep(0.01)
        bulkhead.release()
        await waiter
        second = "handed over" if bulkhead.metrics()["in_use"] == 1 else "lost"
        bulkhead.release()
        return first, second

    assert asyncio.run(main()) == ("timed out", "handed over")


def test_rate_limiter_allows_burst_then_steady_rate() -> None:
    """GCRA lets `burst` calls through at once, then one per interval."""
    now = [100.0]
    limiter = RateLimiter("api", rate=10, per=1.0, burst=3, clock=lambda: now[0])
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]
    with pytest.raises(RateLimitedError) as info:
        limiter.reserve()
    assert info.value.retry_after == pytest.approx(0.1)
    now[0] += 0.1
    assert limiter.try_acquire() and not limiter.try_acquire()


def test_rate_limiter_metrics_count_free_permits_and_waiting_callers() -> None:
    """Free permits fall with each call and refill with time; permits promised to callers
    that must wait show as waiting (and negative free permits); reading changes nothing."""
    now = [100.0]
    limiter = RateLimiter("api", rate=10, per=1.0, burst=3, max_wait=1.0, clock=lambda: now[0])

    def state() -> tuple[int, int, int, int]:
        m = limiter.metrics()
        return m["available_permissions"], m["waiting"], m["permitted"], m["rejected"]

    assert state() == (3, 0, 0, 0)
    assert limiter.try_acquire() and limiter.try_acquire()
    assert state() == state() == (1, 0, 2, 0)
    assert limiter.reserve() == 0 and limiter.reserve() == pytest.approx(0.1)
    assert limiter.reserve() == pytest.approx(0.2)
    assert not limiter.try_acquire()
    assert state() == (-2, 2, 5, 1)
    now[0] += 0.1
    assert state() == (-1, 1, 5, 1)
    now[0] += 0.25
    assert state() == (1, 0, 5, 1)
    now[0] += 10
    assert state() == (3, 0, 5, 1)


def test_time_limiter_cancels_coroutines_and_flags_overrunning_sync_calls() -> None:
    """Async calls are cancelled at the limit; sync calls that overran raise afterwards."""
    limiter = TimeLimiter("search", 0.05)
    cancelled = []

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(OperationTimeoutError):
        asyncio.run(limiter.call_async(slow))
    assert cancelled == [True]
    with pytest.raises(OperationTimeoutError):
        limiter.call(time.sleep, 0.1)
    assert limiter.call(lambda: 1) == 1


def test_pipeline_retries_inside_the_name_and_stops_at_the_open_breaker() -> None:
    """The pipeline retries through the breaker, stops retrying once it opens, and tracks."""
    tracker = LatencyTracker()
    breaker = CircuitBreaker("pay", BreakerConfig(consecutive_failures=3, wait_duration=60))
    calls: list[int] = []

    def charge() -> str:
        calls.append(1)
        raise ConnectionError("gateway down")

    pay = pipeline("pay", fallback=Fallback("pay", default="queued"),
                   retry=Retry("pay", attempts=5, base_delay=0.001), breaker=breaker,
                   tracker=tracker)
    assert pay.call(charge) == "queued"
    assert len(calls) == 3  # three failures trip the breaker; the 4th attempt is refused
    assert pay.call(charge) == "queued" and len(calls) == 3
    with pytest.raises(CircuitOpenError):
        pipeline("pay", breaker=breaker).call(charge)
    assert tracker.snapshot()["pay"]["count"] == 2


def test_every_layer_of_a_pipeline_sees_the_call_arguments() -> None:
    """A Fallback in a pipeline caches per argument and hands them to its handler: once the
    gateway fails, alice gets her own last result, never bob's (sync and async)."""
    up = [True]

    def profile(user: str) -> str:
        if not up[0]:
            raise ConnectionError("down")
        return f"profile of {user}"

    async def aprofile(user: str) -> str:
        return profile(user)

    cached = pipeline("profiles", fallback=Fallback("profiles", cache_ttl=60),
                      retry=Retry("profiles", attempts=2, base_delay=0.001))
    handled = pipeline("profiles", fallback=Fallback(
        "profiles", handler=lambda exc, user: f"guest view for {user}"))
    assert [cached.call(profile, u) for u in ("alice", "bob")] == \
        ["profile of alice", "profile of bob"]
    up[0] = False
    assert cached.call(profile, "alice") == "profile of alice"
    assert asyncio.run(cached.call_async(aprofile, "bob")) == "profile of bob"
    assert handled.call(profile, "carol") == "guest view for carol"
