"""Rate limiting with GCRA (the generic cell rate algorithm, a token bucket in one number).

    limiter = RateLimiter("partner-api", rate=50, per=1.0, burst=10)
    limiter.call(fetch, url)            # waits up to max_wait for a permit, else raises

GCRA keeps one timestamp, the theoretical arrival time (TAT) of the next request:
a request is allowed when now >= TAT - (burst - 1) * interval, and then pushes TAT one
interval on, so `burst` requests may arrive at once and then one per interval. It is
exact, O(1) and constant memory, with no refill thread.
The same timestamp says how many permits are free now (how many intervals TAT can
move on before a request would be refused); negative, it counts permits already
promised to callers still waiting for them, as Resilience4j reports it.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from stackmedic.resilience._errors import RateLimitedError

__all__ = ["RateLimiter"]

P = ParamSpec("P")
T = TypeVar("T")


class RateLimiter:
    """`rate` permits per `per` seconds, with up to `burst` of them at once."""

    def __init__(self, name: str, *, rate: float, per: float = 1.0, burst: int = 1,
                 max_wait: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or per <= 0 or burst < 1:
            raise ValueError("rate and per must be positive and burst at least 1")
        self.name = name
        self.burst = burst
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

    def available_permissions(self) -> int:
        """Permits a caller could take right now; negative: promised to waiting callers."""
        with self._lock:
            ahead = self._tat - self.tolerance - self._clock()
        # The epsilon keeps float error at a permit boundary from losing a whole permit.
        return min(self.burst, 1 - math.ceil(ahead / self.interval - 1e-9))

    def metrics(self) -> dict[str, Any]:
        """Free permits, callers waiting for theirs, and lifetime permitted/rejected counts."""
        available = self.available_permissions()
        return {"name": self.name, "interval": self.interval, "burst": self.burst,
                "max_wait": self.max_wait, "available_permissions": available,
                "waiting": max(0, -available), "permitted": self.permitted,
                "rejected": self.rejected}
