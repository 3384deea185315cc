"""Retry: backoff with jitter, result predicates, breakers, and the shared retry budget."""

from __future__ import annotations

import asyncio

import pytest

from stackmedic.resilience import (
    BreakerConfig,
    CircuitBreaker,
    CircuitOpenError,
    Retry,
    RetryBudget,
)


class Flaky:
    """A dependency that fails its first `failures` calls, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"attempt {self.calls} failed")
        return "ok"


def test_retries_until_success_within_the_attempt_limit() -> None:
    """A dependency failing twice succeeds on the third of three attempts."""
    flaky = Flaky(2)
    assert Retry("dep", attempts=3, base_delay=0.001).call(flaky) == "ok"
    assert flaky.calls == 3


def test_gives_up_after_the_last_attempt_with_the_original_error_and_a_note() -> None:
    """After `attempts` failures the last error is raised as is, noting the give-up."""
    flaky = Flaky(10)
    with pytest.raises(ConnectionError, match="attempt 3 failed") as info:
        Retry("dep", attempts=3, base_delay=0.001).call(flaky)
    assert any("gave up after 3 attempts" in note for note in info.value.__notes__)


def test_only_listed_exceptions_and_matching_results_are_retried() -> None:
    """Errors outside retry_on are not retried; results matching the predicate are."""
    calls: list[int] = []

    def wrong() -> None:
        calls.append(1)
        raise ValueError("bug")

    with pytest.raises(ValueError):
        Retry("dep", retry_on=(ConnectionError,), base_delay=0.001).call(wrong)
    assert len(calls) == 1
    answers = iter([503, 503, 200])
    retry = Retry("dep", attempts=5, base_delay=0.001, retry_if_result=lambda r: r == 503)
    assert retry.call(lambda: next(answers)) == 200


def test_backoff_delays_full_and_decorrelated_jitter_stay_within_bounds() -> None:
    """Full jitter stays under base*2^n and max_delay; decorrelated within [base, 3*prev]."""
    full = Retry("dep", base_delay=0.1, max_delay=1.0, rng=lambda: 0.999)
    assert [round(full.delay(n, 0), 3) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.799, 0.999]
    assert Retry("dep", base_delay=0.1, jitter="none").delay(3, 0) == pytest.approx(0.4)
    dec = Retry("dep", base_delay=0.1, max_delay=2.0, jitter="decorrelated", rng=lambda: 1.0)
    assert dec.delay(1, 0.5) == pytest.approx(1.5) and dec.delay(1, 1.0) == 2.0


def test_an_open_breaker_is_never_retried() -> None:
    """CircuitOpenError goes straight to the caller: retries do not hammer an open breaker."""
    breaker = CircuitBreaker("dep", BreakerConfig(consecutive_failures=1, wait_duration=60))
    flaky = Flaky(100)
    with pytest.raises(CircuitOpenError):
        Retry("dep", attempts=5, base_delay=0.001).call(breaker.call, flaky)
    assert flaky.calls == 1


def test_retry_budget_caps_retries_under_a_failing_dependency() -> None:
    """With a dead dependency, 100 calls sharing a 10% budget make at most 10 + min retries."""
    budget = RetryBudget("payments", ratio=0.1, min_retries=2, window=60)
    callers = [Retry("payments", attempts=4, base_delay=0.0001, budget=budget)
               for _ in range(4)]
    dead = Flaky(10**9)
    for i in range(100):
        with pytest.raises(ConnectionError):
            callers[i % 4].call(dead)
    retries = dead.calls - 100
    assert retries <= 2 + 0.1 * 100
    assert retries >= 10  # the budget allows retries, it does not forbid them
    metrics = budget.metrics()
    assert metrics["calls"] == 100 and metrics["retries"] == retries and metrics["denied"] > 0
    # Without the budget the same outage costs three retries per call.
    unbudgeted = Flaky(10**9)
    for _ in range(10):
        with pytest.raises(ConnectionError):
            Retry("p", attempts=4, base_delay=0.0001).call(unbudgeted)
    assert unbudgeted.calls == 40


def test_async_retry_and_metrics() -> None:
    """call_async retries with asyncio.sleep and metrics count calls and retries."""
    retry = Retry("dep", attempts=3, base_delay=0.001)
    state = {"n": 0}

    async def flaky() -> str:
        state["n"] += 1
        if state["n"] < 3:
            raise ConnectionError
        return "ok"

    assert asyncio.run(retry.call_async(flaky)) == "ok"
    m = retry.metrics()
    assert (m["calls"], m["retries"], m["retries_per_call"]) == (1, 2, 2.0)


def outcomes(retry: Retry) -> tuple[int, int, int, int]:
    m = retry.metrics()
    return (m["successful_without_retry"], m["successful_with_retry"],
            m["failed_with_retry"], m["failed_without_retry"])


def test_outcome_counters_follow_resilience4j_definitions() -> None:
    """First-try and after-retry successes, exhaustion (even at attempts=1) and refused
    budget retries as failed_with_retry, non-retryable errors as failed_without_retry."""
    retry = Retry("dep", attempts=3, base_delay=0.0001, retry_on=(ConnectionError,))
    assert retry.call(Flaky(0)) == "ok"
    assert retry.call(Flaky(2)) == "ok"
    with pytest.raises(ConnectionError):
        retry.call(Flaky(3))
    answers = iter([503, 503, 503])
    limited = Retry("dep", attempts=3, base_delay=0.0001, retry_if_result=lambda r: r == 503)
    assert limited.call(lambda: next(answers)) == 503  # returned, but still retryable
    assert outcomes(limited) == (0, 0, 1, 0)
    single = Retry("dep", attempts=1)
    with pytest.raises(ConnectionError):
        single.call(Flaky(1))
    assert outcomes(single) == (0, 0, 1, 0)
    assert outcomes(retry) == (1, 1, 1, 0)
    assert retry.metrics()["exhausted"] == 1
    refused = Retry("dep", attempts=3, budget=RetryBudget("b", ratio=0.0, min_retries=0))
    with pytest.raises(ConnectionError):
        refused.call(Flaky(1))
    assert outcomes(refused) == (0, 0, 1, 0)


def test_non_retryable_errors_count_as_failed_without_retry_even_after_retries() -> None:
    """A ValueError outside retry_on, an open breaker, and a ValueError after one retried
    ConnectionError are all failed_without_retry, as Resilience4j counts them."""
    retry = Retry("dep", attempts=3, base_delay=0.0001, retry_on=(ConnectionError,))
    errors = iter([ConnectionError("blip"), ValueError("bug")])

    def blip_then_bug() -> None:
        raise next(errors)

    with pytest.raises(ValueError):
        retry.call(blip_then_bug)
    with pytest.raises(ValueError):
        retry.call(int, "not a number")
    breaker = CircuitBreaker("dep", BreakerConfig(consecutive_failures=1, wait_duration=60))
    with pytest.raises(ConnectionError):
        breaker.call(Flaky(1))
    with pytest.raises(CircuitOpenError):
        retry.call(breaker.call, Flaky(0))
    assert outcomes(retry) == (0, 0, 0, 3)
    assert retry.metrics()["retries"] == 1


def test_async_calls_count_outcomes_too() -> None:
    """call_async counts a success after retries and a non-retryable failure."""
    retry = Retry("dep", attempts=3, base_delay=0.0001, retry_on=(ConnectionError,))
    flaky = Flaky(1)

    async def once() -> str:
        return flaky()

    async def bug() -> None:
        raise ValueError("bug")

    assert asyncio.run(retry.call_async(once)) == "ok"
    with pytest.raises(ValueError):
        asyncio.run(retry.call_async(bug))
    assert outcomes(retry) == (0, 1, 0, 1)
