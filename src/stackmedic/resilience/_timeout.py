"""Time limits: real cancellation for coroutines, honest detection for threads.

    limit = TimeLimiter("search", 0.8)
    hits = await limit.call_async(search, query)   # cancelled at 0.8 s -> OperationTimeoutError

Async calls are cancelled at the deadline (asyncio.timeout) and raise
OperationTimeoutError. **Sync calls cannot be interrupted** — CPython has no safe way
to stop a thread — so `call()` lets the function finish, then raises
OperationTimeoutError if it overran, discarding the late result. That keeps callers'
accounting (breaker slow-call and failure rates) right, but it does not free the
caller early: bound sync I/O at the driver (socket timeouts, `statement_timeout`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from stackmedic.resilience._errors import OperationTimeoutError

__all__ = ["TimeLimiter"]

P = ParamSpec("P")
T = TypeVar("T")


class TimeLimiter:
    """A named time limit of `seconds` for the calls it wraps."""

    def __init__(self, name: str, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("seconds must be positive")
        self.name = name
        self.seconds = seconds

    async def call_async(self, func: Callable[P, Awaitable[T]], /, *args: P.args,
                         **kwargs: P.kwargs) -> T:
        try:
            async with asyncio.timeout(self.seconds):
                return await func(*args, **kwargs)
        except TimeoutError:
            raise OperationTimeoutError(self.name, self.seconds) from None

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        start = time.monotonic()
        result = func(*args, **kwargs)
        if time.monotonic() - start > self.seconds:
            raise OperationTimeoutError(self.name, self.seconds)
        return result
