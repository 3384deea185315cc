"""Time limits: real cancellation for coroutines, honest detection for threads.

    @timeout(2)                                    # or: async with timeout(2): ...
    async def search(query): ...                   # cancelled at 2 s -> OperationTimeoutError

    limit = TimeLimiter("search", 0.8)             # the named form, for a pipeline
    hits = await limit.call_async(search, query)

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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from types import TracebackType
from typing import ParamSpec, TypeVar

from stackmedic.resilience._decorate import decorate
from stackmedic.resilience._errors import OperationTimeoutError

__all__ = ["TimeLimiter", "timeout"]

P = ParamSpec("P")
T = TypeVar("T")


class TimeLimiter:
    """A named time limit of `seconds` for the calls it wraps."""

    def __init__(self, name: str, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("seconds must be positive")
        self.name = name
        self.seconds = seconds

    @asynccontextmanager
    async def limit(self) -> AsyncIterator[None]:
        """`async with limiter.limit():` cancels the block at the deadline."""
        deadline = asyncio.timeout(self.seconds)
        try:
            async with deadline:
                yield
        except TimeoutError:
            if not deadline.expired():  # the block's own TimeoutError (a socket's, say)
                raise
            raise OperationTimeoutError(self.name, self.seconds) from None

    @contextmanager
    def limit_sync(self) -> Iterator[None]:
        """`with limiter.limit_sync():` runs the block to the end, then raises if it overran."""
        start = time.monotonic()
        yield
        if time.monotonic() - start > self.seconds:
            raise OperationTimeoutError(self.name, self.seconds)

    async def call_async(self, func: Callable[P, Awaitable[T]], /, *args: P.args,
                         **kwargs: P.kwargs) -> T:
        async with self.limit():
            return await func(*args, **kwargs)

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self.limit_sync():
            return func(*args, **kwargs)

    def __call__(self, func: Callable[P, T]) -> Callable[P, T]:
        """Decorator form for plain and `async def` functions."""
        return decorate(self, func)


class _Timeout(TimeLimiter):
    """What `timeout()` returns: a decorator, and a context manager for one block at a time."""

    def __init__(self, seconds: float, name: str | None) -> None:
        super().__init__(name or "timeout", seconds)
        self._named = name is not None
        self._entered: AbstractContextManager[None] | AbstractAsyncContextManager[None] | None
        self._entered = None

    def __call__(self, func: Callable[P, T]) -> Callable[P, T]:
        """Decorator form; errors are named after the function unless a name was given."""
        if self._named:
            return super().__call__(func)
        return TimeLimiter(getattr(func, "__qualname__", self.name), self.seconds)(func)

    def _enter(self, manager: AbstractContextManager[None] | AbstractAsyncContextManager[None],
               ) -> None:
        if self._entered is not None:  # a second task would share (and cancel) the deadline
            raise RuntimeError("this timeout() is already in use; make one per block")
        self._entered = manager

    async def __aenter__(self) -> None:
        self._enter(manager := self.limit())
        await manager.__aenter__()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        manager, self._entered = self._entered, None
        assert isinstance(manager, AbstractAsyncContextManager)
        return await manager.__aexit__(kind, error, tb)

    def __enter__(self) -> None:
        self._enter(manager := self.limit_sync())
        manager.__enter__()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        manager, self._entered = self._entered, None
        assert isinstance(manager, AbstractContextManager)
        return manager.__exit__(kind, error, tb)


def timeout(seconds: float, name: str | None = None) -> _Timeout:
    """A time limit of `seconds`: `@timeout(2)` on a function, or `async with timeout(2):`.

    Coroutines are cancelled at the deadline; sync code (a plain function, `with
    timeout(2):`) runs to the end and then raises if it overran, as `TimeLimiter.call`
    does. Errors are `OperationTimeoutError` named `name`, else the function's name.
    """
    return _Timeout(seconds, name)
