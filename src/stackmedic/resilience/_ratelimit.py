"""Rate limiting with GCRA (the generic cell rate algorithm, a token bucket in one number).

    limiter = RateLimiter("partner-api", rate=50, per=1.0, burst=10)
    limiter.call(fetch, url)            # waits up to max_wait for a permit, else raises

GCRA keeps one timestamp, the theoretical arrival time (TAT) of the next request:
a request is allowed when now >= TAT - burst * interval, and then pushes TAT one
interval on. It is exact, O(1) and constant memory, with no refill thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from stackmedic.resilience._errors import RateLimitedError

__all__ = ["RateLimiter"]

P = ParamSpec("P")
T = TypeVar("T")


class RateLimiter:
    """`rate` permits per `per` seconds, allowing bursts of `burst` beyond the steady rate."""

    def __init__(self, name: str, *, rate: float, per: float = 1.0, burst: int = 1,
                 max_wait: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or per <= 0 or burst < 1:
            raise ValueError("rate and per must be positive and burst at least 1")
        self.name = name
        self.interval = per / rate
        self.tolerance = self.interval * (burst - 1)
        self.max_wait = max_wait
        self._clock = clock
        self._tat = 0.0
        self._lock = threading.Lock()
        self.permitted = self.rejected = 0

    def reserve(self) -> float:
        """Claim a permit; returns how long to wait before using it (0: now).

        Raises RateLimitedError (claiming nothing) when the wait would exceed `max_wait`.
        """
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            wait = tat - self.tolerance - now
            if wait > self.max_wait:
                self.rejected += 1
                raise RateLimitedError(self.name, wait)
            self._tat = tat + self.interval
            self.permitted += 1
            return max(0.0, wait)

    def try_acquire(self) -> bool:
        """A permit right now, or False (never waits)."""
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            if tat - self.tolerance > now:
                self.rejected += 1
                return False
            self._tat = tat + self.interval
            self.permitted += 1
            return True

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        wait = self.reserve()
        if wait:
            time.sleep(wait)
        return func(*args, **kwargs)

    async def call_async(self, func: Callable[P, Awaitable[T]], /, *args: P.args,
                         **kwargs: P.kwargs) -> T:
        wait = self.reserve()
        if wait:
            await asyncio.sleep(wait)
        return await func(*args, **kwargs)

    def metrics(self) -> dict[str, Any]:
        return {"name": self.name, "interval": self.interval, "permitted": self.permitted,
                "rejected": self.rejected}
