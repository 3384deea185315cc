"""Retry with exponential backoff and jitter, bounded by a shared retry budget.

    budget = RetryBudget("payments", ratio=0.2)          # shared by every caller
    retry = Retry("payments", attempts=4, base_delay=0.05, budget=budget)
    result = retry.call(charge, order)

Backoff is exponential with *full* jitter (uniform in [0, base * 2^n]) or
*decorrelated* jitter (uniform in [base, 3 * previous]), capped at `max_delay`.
A retry budget caps retries at `ratio` of the calls seen over `window` seconds (plus
`min_retries` so a quiet service can still retry), across every `Retry` that shares
it: when a dependency fails for everyone, retries stop multiplying its load.
Polly and Resilience4j have no such budget; Finagle and Linkerd do, and it is the
difference between a blip and a retry storm. A `CircuitOpenError` is never retried
(the breaker already knows the answer). When retries stop, the last error is raised
as is, with a note saying why retrying stopped.

Besides the windowed counts, a `Retry` keeps Resilience4j's four lifetime outcome
counters, with its definitions: a call that ends on a non-retryable error is
`failed_without_retry` (even after earlier retries), and one whose last outcome was
still retryable (attempts exhausted, or the budget refused) is `failed_with_retry`
(even with `attempts=1`). Plain integer increments: no lock on the hot path.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, ParamSpec, TypeVar

from stackmedic.resilience._decorate import decorate
from stackmedic.resilience._errors import CircuitOpenError
from stackmedic.resilience._queue import RecentCounter

__all__ = ["Retry", "RetryBudget"]

P = ParamSpec("P")
T = TypeVar("T")


class RetryBudget:
    """Retries allowed: `min_retries + ratio * calls` over the last `window` seconds."""

    def __init__(self, name: str, *, ratio: float = 0.2, window: int = 10,
                 min_retries: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("ratio is a fraction of calls in [0, 1]")
        self.name = name
        self.ratio = ratio
        self.window = window
        self.min_retries = min_retries
        self._lock = threading.Lock()
        self._calls = RecentCounter(window, clock)
        self._retries = RecentCounter(window, clock)
        self.denied = 0

    def record_call(self) -> None:
        with self._lock:
            self._calls.add()

    def try_retry(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        with self._lock:
            allowed = self.min_retries + self.ratio * self._calls.total()
            if self._retries.total() + 1 > allowed:
                self.denied += 1
                return False
            self._retries.add()
            return True

    def metrics(self) -> dict[str, Any]:
        with self._lock:
            calls, retries = self._calls.total(), self._retries.total()
        return {"name": self.name, "calls": calls, "retries": retries,
                "retries_per_call": retries / calls if calls else 0.0,
                "budget_ratio": self.ratio, "denied": self.denied, "window_seconds": self.window}


class Retry:
    """Run a call up to `attempts` times, sleeping a jittered backoff between tries."""

    def __init__(self, name: str, *, attempts: int = 3, base_delay: float = 0.1,
                 max_delay: float = 10.0, jitter: Literal["full", "decorrelated", "none"] = "full",
                 retry_on: tuple[type[BaseException], ...] = (Exception,),
                 retry_if_result: Callable[[Any], bool] | None = None,
                 budget: RetryBudget | None = None, window: int = 60,
                 rng: Callable[[], float] = random.random) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.name = name
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.jitter = jitter
        self.retry_on = retry_on
        self.retry_if_result = retry_if_result
        self.budget = budget
        self._rng = rng
        self._lock = threading.Lock()
        self._calls = RecentCounter(window)
        self._retries = RecentCounter(window)
        self.window = window
        self.exhausted = 0
        self.successful_without_retry = self.successful_with_retry = 0
        self.failed_with_retry = self.failed_without_retry = 0

    def delay(self, retry: int, previous: float) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        if self.jitter == "decorrelated":
            upper = max(self.base_delay, previous * 3)
            return min(self.max_delay, self.base_delay + self._rng() * (upper - self.base_delay))
        ceiling: float = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return ceiling * self._rng() if self.jitter == "full" else ceiling

    def _count(self, counter: RecentCounter) -> None:
        with self._lock:
            counter.add()

    def _should_retry(self, attempt: int, exc: BaseException | None, result: Any) -> bool:
        """Decide after an attempt, counting the call's outcome when it is the last;
        notes on `exc` say why retrying stopped."""
        if exc is not None:
            if isinstance(exc, CircuitOpenError) or not isinstance(exc, self.retry_on):
                self.failed_without_retry += 1
                return False
        elif self.retry_if_result is None or not self.retry_if_result(result):
            if attempt == 1:
                self.successful_without_retry += 1
            else:
                self.successful_with_retry += 1
            return False
        if attempt >= self.attempts:
            self.exhausted += 1
            self.failed_with_retry += 1
            if exc is not None:
                exc.add_note(f"retry {self.name!r}: gave up after {attempt} attempts")
            return False
        if self.budget is not None and not self.budget.try_retry():
            self.failed_with_retry += 1
            if exc is not None:
                exc.add_note(f"retry budget {self.budget.name!r} exhausted: not retried")
            return False
        self._count(self._retries)
        return True

    def _start(self) -> None:
        self._count(self._calls)
        if self.budget is not None:
            self.budget.record_call()

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call `func`, retrying per the policy (sleeps on the calling thread)."""
        self._start()
        previous = self.base_delay
        for attempt in range(1, self.attempts + 1):
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                if not self._should_retry(attempt, exc, None):
                    raise
            else:
                if not self._should_retry(attempt, None, result):
                    return result
            previous = self.delay(attempt, previous)
            time.sleep(previous)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def call_async(self, func: Callable[P, Awaitable[T]], /, *args: P.args,
                         **kwargs: P.kwargs) -> T:
        """Await `func(...)`, retrying per the policy (sleeps with asyncio.sleep)."""
        self._start()
        previous = self.base_delay
        for attempt in range(1, self.attempts + 1):
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                if not self._should_retry(attempt, exc, None):
                    raise
            else:
                if not self._should_retry(attempt, None, result):
                    return result
            previous = self.delay(attempt, previous)
            await asyncio.sleep(previous)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def __call__(self, func: Callable[P, T]) -> Callable[P, T]:
        """Decorator form for plain and `async def` functions."""
        return decorate(self, func)

    def metrics(self) -> dict[str, Any]:
        """Calls and retries over the last `window` seconds, for the retry-storm check,
        and the lifetime outcome counters."""
        with self._lock:
            calls, retries = self._calls.total(), self._retries.total()
        out = {"name": self.name, "calls": calls, "retries": retries,
               "retries_per_call": retries / calls if calls else 0.0,
               "max_attempts": self.attempts, "exhausted": self.exhausted,
               "window_seconds": self.window,
               "successful_without_retry": self.successful_without_retry,
               "successful_with_retry": self.successful_with_retry,
               "failed_with_retry": self.failed_with_retry,
               "failed_without_retry": self.failed_without_retry}
        if self.budget is not None:
            out |= {"budget": self.budget.name, "budget_ratio": self.budget.ratio,
                    "budget_denied": self.budget.denied}
        return out
