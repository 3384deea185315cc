"""The circuit breaker: windows, rates, exact half-open trials, states, events, memory."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import pytest

from stackmedic.resilience import (
    BreakerConfig,
    BreakerEvent,
    CallNotPermitted,
    CircuitBreaker,
    CircuitOpenError,
    FailureRateExceeded,
    Rejected,
    SlowCallRateExceeded,
    State,
    StateTransition,
)


class Clock:
    """A hand-moved monotonic clock, so window and wait behaviour needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def boom() -> None:
    raise ConnectionError("dependency down")


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError):
            breaker.call(boom)


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.call(lambda: 42) == 42


def tripped(n_trials: int, clock: Clock) -> CircuitBreaker:
    """A breaker that has tripped and whose wait is over (next call goes half-open)."""
    breaker = CircuitBreaker("dep", BreakerConfig(consecutive_failures=1, wait_duration=5,
                                                  half_open_calls=n_trials), clock=clock)
    fail(breaker)
    assert breaker.state is State.OPEN
    clock.now += 5
    return breaker


def test_half_open_permits_exactly_n_trial_calls_under_200_threads() -> None:
    """200 threads hitting a half-open breaker at once get exactly N trial calls through."""
    clock = Clock()
    breaker = tripped(7, clock)
    barrier = threading.Barrier(200)
    release = threading.Event()
    admitted: list[int] = []
    rejected: list[int] = []

    def trial() -> None:
        admitted.append(1)
        release.wait(30)

    def worker() -> None:
        barrier.wait()
        try:
            breaker.call(trial)
        except CircuitOpenError:
            rejected.append(1)

    threads = [threading.Thread(target=worker) for _ in range(200)]
    for t in threads:
        t.start()
    while len(admitted) + len(rejected) < 200 and len(rejected) < 193:
        threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join(30)
    assert (len(admitted), len(rejected)) == (7, 193)
    assert breaker.state is State.CLOSED


def test_half_open_permits_exactly_n_trial_calls_under_200_coroutines() -> None:
    """200 concurrent coroutines get exactly N trial calls through a half-open breaker."""
    clock = Clock()
    breaker = tripped(5, clock)

    async def main() -> tuple[int, int]:
        release = asyncio.Event()
        admitted = 0

        async def trial() -> None:
            nonlocal admitted
            admitted += 1
            await release.wait()
            raise ConnectionError("still down")

        async def worker() -> str:
            try:
                await breaker.call_async(trial)
            except CircuitOpenError:
                return "rejected"
            except ConnectionError:
                return "failed"
            return "ok"

        tasks = [asyncio.create_task(worker()) for _ in range(200)]
        await asyncio.sleep(0)
        while sum(t.done() for t in tasks) + admitted < 200:
            await asyncio.sleep(0.001)
        release.set()
        results = await asyncio.gather(*tasks)
        return admitted, results.count("rejected")

    assert asyncio.run(main()) == (5, 195)
    assert breaker.state is State.OPEN  # all 5 trials failed: back to open


@pytest.mark.parametrize("window", ["count", "time"])
def test_failure_rate_trips_only_at_threshold_after_minimum_calls(window: Any) -> None:
    """The breaker trips when failures reach the rate over the window, not before minimum calls."""
    clock = Clock()
    breaker = CircuitBreaker("db", BreakerConfig(window=window, window_size=10, minimum_calls=10,
                                                 failure_rate_threshold=0.5), clock=clock)
    fail(breaker, 4)
    succeed(breaker, 5)
    assert breaker.state is State.CLOSED
    assert breaker.metrics().failure_rate is None  # 9 calls: below minimum
    fail(breaker)
    assert breaker.state is State.OPEN
    metrics = breaker.metrics()
    assert (metrics.state, metrics.retry_after) == ("open", 60.0)


def test_time_window_forgets_failures_older_than_the_window() -> None:
    """Failures that slid out of a time window no longer count toward the rate."""
    clock = Clock()
    breaker = CircuitBreaker("db", BreakerConfig(window="time", window_size=10, minimum_calls=4),
                             clock=clock)
    fail(breaker, 3)
    clock.now += 11
    succeed(breaker, 3)
    fail(breaker)
    m = breaker.metrics()
    assert (m.state, m.buffered_calls, m.failed_calls) == ("closed", 4, 1)


def test_count_window_evicts_oldest_outcomes() -> None:
    """A count window only judges the last `window_size` calls."""
    breaker = CircuitBreaker("db", BreakerConfig(window_size=4, minimum_calls=4))
    fail(breaker)
    succeed(breaker, 4)
    fail(breaker)
    m = breaker.metrics()
    assert (m.state, m.buffered_calls, m.failed_calls, m.failure_rate) == ("closed", 4, 1, 0.25)


def test_lock_free_successes_keep_the_window_exact() -> None:
    """Successes skipped on the lock-free paths (a window full of successes, a success
    replacing a success) leave the window judging exactly the last `window_size` calls."""
    breaker = CircuitBreaker("db", BreakerConfig(window_size=10, minimum_calls=10))

    def rate() -> tuple[int, float | None]:
        m = breaker.metrics()
        return m.failed_calls, m.failure_rate

    succeed(breaker, 20)            # the window fills, then is all successes
    assert rate() == (0, 0.0)
    fail(breaker, 4)
    succeed(breaker, 6)             # last ten: 4 failures, 6 successes
    assert rate() == (4, 0.4)
    succeed(breaker, 4)             # the failures leave the window
    assert rate() == (0, 0.0)
    fail(breaker, 4)
    assert breaker.state is State.CLOSED
    fail(breaker)                   # 5 of the last 10
    assert breaker.state is State.OPEN


@pytest.mark.parametrize("window", ["count", "time"])
def test_slow_call_rate_trips_the_breaker(window: Any) -> None:
    """Calls slower than the duration threshold trip the breaker by slow-call rate."""
    events: list[BreakerEvent] = []
    breaker = CircuitBreaker("search", BreakerConfig(
        window=window, window_size=10, minimum_calls=3, slow_call_duration=0.02,
        slow_call_rate_threshold=0.6))
    breaker.add_listener(events.append)
    for _ in range(3):
        breaker.call(threading.Event().wait, 0.05)
    assert breaker.state is State.OPEN
    assert any(isinstance(e, SlowCallRateExceeded) and e.rate == 1.0 for e in events)


def test_fast_calls_do_not_count_as_slow() -> None:
    """Calls well under the slow threshold leave the breaker closed with a zero slow rate."""
    breaker = CircuitBreaker("search", BreakerConfig(minimum_calls=3, slow_call_duration=30))
    succeed(breaker, 5)
    assert (breaker.state, breaker.metrics().slow_call_rate) == (State.CLOSED, 0.0)


def test_events_trace_a_full_trip_and_recovery() -> None:
    """Listeners see the rate exceeded, each transition and rejected calls, in order."""
    clock = Clock()
    events: list[BreakerEvent] = []
    breaker = CircuitBreaker("pay", BreakerConfig(minimum_calls=2, wait_duration=1,
                                                  half_open_calls=1), clock=clock)
    breaker.add_listener(events.append)
    fail(breaker, 2)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: 1)
    assert (info.value.name, info.value.retry_after) == ("pay", 1.0)
    clock.now += 1
    succeed(breaker)
    kinds = [(type(e).__name__, getattr(e, "to_state", None)) for e in events]
    assert kinds == [("FailureRateExceeded", None), ("StateTransition", "open"),
                     ("CallNotPermitted", None), ("StateTransition", "half_open"),
                     ("StateTransition", "closed")]
    assert isinstance(events[0], FailureRateExceeded) and events[0].rate == 1.0
    assert isinstance(events[2], CallNotPermitted)
    assert all(isinstance(e, StateTransition) for e in events[3:])


def test_wait_backs_off_on_repeated_trips_and_resets_on_close() -> None:
    """Each trip in a row multiplies the open wait, capped; closing resets the backoff."""
    clock = Clock()
    breaker = CircuitBreaker("dep", BreakerConfig(consecutive_failures=1, half_open_calls=1,
                                                  wait_duration=2, wait_multiplier=3,
                                                  max_wait_duration=10), clock=clock)
    waits = []
    for _ in range(3):
        fail(breaker)
        waits.append(breaker.metrics().retry_after)
        clock.now += 100
    assert waits == [2, 6, 10]
    succeed(breaker)
    fail(breaker)
    assert breaker.metrics().retry_after == 2


def test_manual_states_disabled_forced_open_metrics_only() -> None:
    """DISABLED permits and ignores, FORCED_OPEN rejects, METRICS_ONLY counts but never trips."""
    breaker = CircuitBreaker("dep", BreakerConfig(minimum_calls=1))
    breaker.transition_to(State.DISABLED)
    fail(breaker, 3)
    assert (breaker.state, breaker.metrics().buffered_calls) == (State.DISABLED, 0)
    breaker.transition_to(State.FORCED_OPEN)
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: 1)
    breaker.transition_to(State.METRICS_ONLY)
    fail(breaker, 3)
    m = breaker.metrics()
    assert (m.state, m.failed_calls, m.failure_rate) == ("metrics_only", 3, 1.0)
    breaker.reset()
    assert breaker.state is State.CLOSED and breaker.metrics().buffered_calls == 0


def test_ignored_and_unrecorded_exceptions_and_result_predicate() -> None:
    """Ignored errors count as nothing, unlisted ones as success, predicate hits as failures."""
    breaker = CircuitBreaker("api", BreakerConfig(
        minimum_calls=1, window_size=10, record_exceptions=(ConnectionError,),
        ignore_exceptions=(KeyError,), failure_predicate=lambda r: r == 503))
    with pytest.raises(KeyError):
        breaker.call(lambda: {}["x"])
    with pytest.raises(ValueError):
        breaker.call(int, "nope")
    assert (breaker.metrics().buffered_calls, breaker.metrics().failed_calls) == (1, 0)
    assert breaker.call(lambda: 503) == 503
    assert breaker.state is State.OPEN


def test_decorator_context_manager_and_try_call_forms() -> None:
    """The decorator, `protect()` (sync and async) and `try_call` all go through the breaker."""
    breaker = CircuitBreaker("dep", BreakerConfig(consecutive_failures=2))

    @breaker
    def double(x: int) -> int:
        return 2 * x

    @breaker
    async def triple(x: int) -> int:
        return 3 * x

    assert double(2) == 4 and asyncio.run(triple(2)) == 6
    with pytest.raises(ConnectionError), breaker.protect():
        boom()

    async def guarded() -> None:
        async with breaker.protect():
            boom()

    with pytest.raises(ConnectionError):
        asyncio.run(guarded())
    assert breaker.state is State.OPEN
    outcome = breaker.try_call(double, 1)
    assert isinstance(outcome, Rejected) and outcome.name == "dep"


def test_stale_results_do_not_count_in_a_new_state() -> None:
    """A call permitted while closed that finishes after a reset does not touch the new window."""
    breaker = CircuitBreaker("dep", BreakerConfig(minimum_calls=1))
    with pytest.raises(ConnectionError), breaker.protect():
        breaker.reset()
        boom()
    assert breaker.state is State.CLOSED and breaker.metrics().buffered_calls == 0


def test_memory_stays_constant_over_a_million_rejected_calls() -> None:
    """Rejecting 1,000,000 calls while open allocates nothing that stays."""
    breaker = CircuitBreaker("dep", BreakerConfig(consecutive_failures=1, wait_duration=3600))
    fail(breaker)
    call = breaker.try_call
    noop = int
    for _ in range(1000):
        call(noop)
    before = sys.getallocatedblocks()
    for _ in range(1_000_000):
        call(noop)
    grown = sys.getallocatedblocks() - before
    assert breaker.metrics().not_permitted_calls == 1_001_000
    assert grown < 50  # a leak of one object per call would be ~1,000,000 blocks


def hung_trial_breaker(clock: Clock, max_wait: float | None
                       ) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    """A tripped breaker (wait 5 s, 2 trials) whose transitions are recorded."""
    breaker = CircuitBreaker("dep", BreakerConfig(
        consecutive_failures=1, wait_duration=5, half_open_calls=2,
        max_wait_in_half_open=max_wait), clock=clock)
    moves: list[tuple[str, str]] = []
    breaker.add_listener(lambda e: moves.append((e.from_state, e.to_state))
                         if isinstance(e, StateTransition) else None)
    fail(breaker)
    clock.now += 5
    return breaker, moves


def test_hung_sync_trials_send_the_breaker_back_to_open_after_max_wait() -> None:
    """Trials blocked past max_wait_in_half_open reopen it; a later wait grants fresh trials."""
    clock = Clock()
    breaker, moves = hung_trial_breaker(clock, max_wait=3)
    started, release = threading.Barrier(3), threading.Event()
    outcomes: list[Any] = []

    def hang() -> str:
        started.wait()
        release.wait(10)
        return "late"

    threads = [threading.Thread(target=lambda: outcomes.append(breaker.call(hang)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    started.wait()  # both trial permits are taken and their calls are blocked
    with pytest.raises(CircuitOpenError) as refused:
        breaker.call(lambda: 1)
    assert refused.value.retry_after is None and breaker.state.label == "half_open"
    clock.now += 2.9
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: 1)
    assert breaker.state.label == "half_open"
    clock.now += 0.1  # 3 s in half-open with no trial finished
    with pytest.raises(CircuitOpenError) as refused:
        breaker.call(lambda: 1)
    assert breaker.state.label == "open" and refused.value.retry_after == pytest.approx(5)
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "open")]
    clock.now += 5
    succeed(breaker, 2)  # two fresh trials, exactly as many as configured
    assert breaker.state.label == "closed"
    release.set()
    for thread in threads:
        thread.join()
    assert outcomes == ["late", "late"] and breaker.state.label == "closed"  # stale: dropped
    assert moves[-2:] == [("open", "half_open"), ("half_open", "closed")]


def test_hung_async_trials_send_the_breaker_back_to_open_after_max_wait() -> None:
    """The same for coroutines: a trial awaiting an Event past the limit reopens the breaker."""
    clock = Clock()
    breaker, moves = hung_trial_breaker(clock, max_wait=3)

    async def scenario() -> None:
        release = asyncio.Event()
        entered = 0

        async def hang() -> str:
            nonlocal entered
            entered += 1
            await release.wait()
            return "late"

        async def ok() -> int:
            return 1

        trials = [asyncio.create_task(breaker.call_async(hang)) for _ in range(2)]
        await asyncio.sleep(0)
        assert entered == 2
        with pytest.raises(CircuitOpenError):
            await breaker.call_async(ok)
        clock.now += 3
        with pytest.raises(CircuitOpenError):
            await breaker.call_async(ok)
        assert breaker.state is State.OPEN
        clock.now += 5
        extra = [asyncio.create_task(breaker.call_async(hang)) for _ in range(3)]
        await asyncio.sleep(0)
        assert entered == 4  # exactly two fresh trials; the third was refused
        with pytest.raises(CircuitOpenError):
            await extra[2]
        release.set()
        assert await asyncio.gather(*trials, *extra[:2]) == ["late"] * 4
        assert breaker.state.label == "closed"  # the fresh round closed it; stale ones did nothing

    asyncio.run(scenario())
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "open"),
                     ("open", "half_open"), ("half_open", "closed")]


def test_a_trial_finishing_after_max_wait_reopens_and_metrics_see_the_limit() -> None:
    """A result arriving after the limit does not close the breaker; metrics() applies the limit."""
    clock = Clock()
    breaker, moves = hung_trial_breaker(clock, max_wait=3)
    with breaker.protect():
        clock.now += 3  # the first trial took the whole allowance
    assert breaker.state is State.OPEN and breaker.metrics().consecutive_trips == 2
    clock.now += 5
    with breaker.protect():
        pass  # a fresh round: 1 of 2 trials, not yet finished...
    clock.now += 3
    metrics = breaker.metrics()  # ...and nobody calls again: the snapshot reopens it
    assert metrics.state == "open" and metrics.retry_after == pytest.approx(5)
    assert moves.count(("half_open", "open")) == 2


def test_without_max_wait_hung_trials_keep_the_breaker_half_open() -> None:
    """The default (None) waits for the trials however long they take."""
    clock = Clock()
    breaker, _ = hung_trial_breaker(clock, max_wait=None)
    guards = [breaker.protect().__enter__() for _ in range(2)]
    clock.now += 1e6
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: 1)
    assert breaker.metrics().state == "half_open"
    for guard in guards:
        guard.__exit__(None, None, None)
    assert breaker.state is State.CLOSED
    with pytest.raises(ValueError):
        BreakerConfig(max_wait_in_half_open=0)
