"""Bulkhead: at most N calls in flight, a bounded and time-limited wait for a slot.

    db = Bulkhead("db", max_concurrent=10, max_waiting=20, max_wait=0.5)
    rows = db.call(run_query, sql)             # or: async with db.slot(): ...

One counter serves threads and coroutines alike: a free slot is taken under a
`threading.Lock`; a thread waits on a Condition, a coroutine on a future of its
own loop, and a release hands the slot straight to the oldest waiter (FIFO, so a
burst cannot starve an early caller). At most `max_waiting` callers wait, each for
at most `max_wait` seconds; beyond that BulkheadFullError is raised at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, ParamSpec, TypeVar

from stackmedic.resilience._decorate import decorate
from stackmedic.resilience._errors import BulkheadFullError

__all__ = ["Bulkhead"]

P = ParamSpec("P")
T = TypeVar("T")


class _Waiter:
    """One queued caller: a thread (event) or a coroutine (future on its loop)."""

    __slots__ = ("event", "future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] | None = loop.create_future() if loop else None
        self.event = None if loop else threading.Event()
        self.granted = False

    def wake(self) -> None:
        self.granted = True
        if self.event is not None:
            self.event.set()
        elif self.loop is not None and self.future is not None:
            self.loop.call_soon_threadsafe(_resolve, self.future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Bulkhead:
    """Bounded concurrency for one dependency; `call`, `call_async`, decorator, `slot()`."""

    def __init__(self, name: str, *, max_concurrent: int = 10, max_waiting: int = 0,
                 max_wait: float = 0.0) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.max_wait = max_wait
        self._lock = threading.Lock()
        self._in_flight = 0
        self._waiters: deque[_Waiter] = deque()
        self.rejected = 0
        self.completed = 0

    def _enqueue_or_take(self, waiter: _Waiter) -> bool:
        """Take a slot now (True), or queue `waiter` (False); BulkheadFullError if neither."""
        with self._lock:
            if self._in_flight < self.max_concurrent and not self._waiters:
                self._in_flight += 1
                return True
            if len(self._waiters) >= self.max_waiting or self.max_wait <= 0:
                self.rejected += 1
                raise BulkheadFullError(self.name, self.max_concurrent)
            self._waiters.append(waiter)
            return False

    def _give_up(self, waiter: _Waiter) -> None:
        """A waiter timed out: leave the queue, or pass on a slot granted meanwhile."""
        with self._lock:
            if not waiter.granted:
                self._waiters.remove(waiter)
                self.rejected += 1
                raise BulkheadFullError(self.name, self.max_concurrent)

    def release(self) -> None:
        with self._lock:
            self.completed += 1
            if self._waiters:
                self._waiters.popleft().wake()  # the slot passes on; in_flight is unchanged
            else:
                self._in_flight -= 1

    def acquire(self) -> None:
        """Take a slot, waiting up to `max_wait` (blocking the thread)."""
        waiter = _Waiter()
        if self._enqueue_or_take(waiter):
            return
        assert waiter.event is not None
        if not waiter.event.wait(self.max_wait):
            self._give_up(waiter)

    async def acquire_async(self) -> None:
        """Take a slot, waiting up to `max_wait` without blocking the loop."""
        waiter = _Waiter(asyncio.get_running_loop())
        if self._enqueue_or_take(waiter):
            return
        assert waiter.future is not None
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), self.max_wait)
        except TimeoutError:
            self._give_up(waiter)
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiting task was cancelled: leave the queue, or return a slot granted meanwhile."""
        with self._lock:
            if not waiter.granted:
                self._waiters.remove(waiter)
                return
        self.release()

    @contextmanager
    def slot_sync(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """`async with bulkhead.slot():` runs the block in one slot."""
        await self.acquire_async()
        try:
            yield
        finally:
            self.release()

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self.slot_sync():
            return func(*args, **kwargs)

    async def call_async(self, func: Callable[P, Awaitable[T]], /, *args: P.args,
                         **kwargs: P.kwargs) -> T:
        async with self.slot():
            return await func(*args, **kwargs)

    def __call__(self, func: Callable[P, T]) -> Callable[P, T]:
        """Decorator form for plain and `async def` functions."""
        return decorate(self, func)

    def metrics(self) -> dict[str, Any]:
        """In-flight calls against the maximum: the shape /diagnostics uses for pools too."""
        with self._lock:
            return {"name": self.name, "in_use": self._in_flight, "max": self.max_concurrent,
                    "waiting": len(self._waiters), "max_waiting": self.max_waiting,
                    "rejected": self.rejected, "completed": self.completed}
