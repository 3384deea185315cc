"""A bounded asyncio work queue with priorities, per-item timeouts and acting backpressure.

    queue = WorkQueue("orders", handle_order, capacity=1000, workers=8,
                      delay_at=0.8, max_delay=0.5, item_timeout=30)
    await queue.start()
    await queue.put(order, priority=0)     # lower number runs first

Backpressure acts on producers instead of being logged: at `delay_at` utilisation a
`put()` waits (up to `max_delay`) for the queue to drain below that level, and is then
rejected with QueueFullError; at `reject_at` (default: full) it is rejected at once.
Rejections are counted in total and over the last minute, which is what the doctor's
`resilience.queue.saturated` reads. The queue belongs to one event loop; from other
threads submit with `asyncio.run_coroutine_threadsafe(queue.put(x), loop)`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from stackmedic.resilience._errors import QueueFullError

__all__ = ["RecentCounter", "WorkQueue"]

T = TypeVar("T")


class RecentCounter:
    """Events counted per second over the last `seconds` seconds, in constant memory."""

    def __init__(self, seconds: int = 60, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._buckets: deque[list[int]] = deque(maxlen=seconds)

    def add(self, n: int = 1) -> None:
        second = int(self._clock())
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([second, n])

    def total(self) -> int:
        horizon = int(self._clock()) - self._seconds
        return sum(n for second, n in self._buckets if second > horizon)


class WorkQueue(Generic[T]):
    """Items handled by `workers` asyncio tasks in priority order (lower first, then FIFO)."""

    def __init__(self, name: str, handler: Callable[[T], Awaitable[Any]], *,
                 capacity: int = 1000, workers: int = 4, item_timeout: float | None = None,
                 delay_at: float | None = None, reject_at: float = 1.0,
                 max_delay: float = 1.0) -> None:
        if capacity < 1 or workers < 1:
            raise ValueError("capacity and workers must be at least 1")
        if not 0.0 < reject_at <= 1.0 or (delay_at is not None and not 0.0 < delay_at <= 1.0):
            raise ValueError("delay_at and reject_at are fractions of capacity in (0, 1]")
        self.name = name
        self.capacity = capacity
        self.workers = workers
        self.item_timeout = item_timeout
        self.delay_at = delay_at
        self.reject_at = reject_at
        self.max_delay = max_delay
        self._handler = handler
        self._heap: list[tuple[int, int, float, T]] = []
        self._seq = itertools.count()
        self._items: asyncio.Condition | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = 0
        self._wakeups: set[asyncio.Task[None]] = set()  # keeps wake-up tasks referenced
        self.processed = self.failed = self.timed_out = self.rejected = self.delayed = 0
        self._rejected_recent = RecentCounter()

    @property
    def size(self) -> int:
        return len(self._heap)

    @property
    def utilisation(self) -> float:
        return len(self._heap) / self.capacity

    def _condition(self) -> asyncio.Condition:
        if self._items is None:
            self._items = asyncio.Condition()
        return self._items

    async def start(self) -> None:
        """Start the worker tasks on the running loop."""
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._work(), name=f"{self.name}-worker-{i}")
                           for i in range(self.workers)]

    async def stop(self, *, drain: bool = True, timeout: float = 10.0) -> None:
        """Stop the workers, first waiting up to `timeout` for queued items if `drain`."""
        if drain:
            await self.join(timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def join(self, timeout: float = 10.0) -> None:
        """Wait until the queue is empty and no worker is busy (or `timeout` passes)."""
        deadline = time.monotonic() + timeout
        items = self._condition()
        async with items:
            while (self._heap or self._busy) and time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(items.wait(), deadline - time.monotonic())
                except TimeoutError:
                    break

    def _reject(self) -> QueueFullError:
        self.rejected += 1
        self._rejected_recent.add()
        return QueueFullError(self.name, len(self._heap), self.capacity)

    def put_nowait(self, item: T, priority: int = 0) -> None:
        """Enqueue without waiting; QueueFullError at `delay_at` or `reject_at`."""
        level = self.reject_at if self.delay_at is None else min(self.delay_at, self.reject_at)
        if len(self._heap) >= max(1, int(level * self.capacity)) or \
                len(self._heap) >= self.capacity:
            raise self._reject()
        self._push(item, priority)
        # Wake a worker without awaiting (the caller may not be able to await).
        task = asyncio.get_running_loop().create_task(self._notify())
        self._wakeups.add(task)
        task.add_done_callback(self._wakeups.discard)

    async def put(self, item: T, priority: int = 0) -> None:
        """Enqueue, waiting out backpressure up to `max_delay`; QueueFullError if it persists."""
        items = self._condition()
        reject_size = max(1, int(self.reject_at * self.capacity))
        async with items:
            if len(self._heap) >= reject_size:
                raise self._reject()
            if self.delay_at is not None and len(self._heap) >= int(self.delay_at *
                                                                     self.capacity):
                self.delayed += 1
                limit = int(self.delay_at * self.capacity)
                try:
                    await asyncio.wait_for(items.wait_for(lambda: len(self._heap) < limit),
                                           self.max_delay)
                except TimeoutError:
                    raise self._reject() from None
            self._push(item, priority)
            items.notify_all()

    def _push(self, item: T, priority: int) -> None:
        heapq.heappush(self._heap, (priority, next(self._seq), time.monotonic(), item))

    async def _notify(self) -> None:
        items = self._condition()
        async with items:
            items.notify_all()

    async def _work(self) -> None:
        items = self._condition()
        while True:
            async with items:
                await items.wait_for(lambda: bool(self._heap))
                _prio, _seq, _queued_at, item = heapq.heappop(self._heap)
                self._busy += 1
                items.notify_all()  # producers delayed by backpressure re-check the size
            try:
                if self.item_timeout is None:
                    await self._handler(item)
                else:
                    await asyncio.wait_for(self._handler(item), self.item_timeout)
            except TimeoutError:
                self.timed_out += 1
            except Exception:  # a failing item is counted, the worker lives on
                self.failed += 1
            else:
                self.processed += 1
            finally:
                async with items:
                    self._busy -= 1
                    items.notify_all()

    def oldest_age(self) -> float | None:
        """Seconds the oldest queued item has waited (None when empty)."""
        if not self._heap:
            return None
        return time.monotonic() - min(entry[2] for entry in self._heap)

    def metrics(self) -> dict[str, Any]:
        return {
            "name": self.name, "size": len(self._heap), "capacity": self.capacity,
            "utilisation": len(self._heap) / self.capacity, "workers": len(self._tasks),
            "busy_workers": self._busy, "processed": self.processed, "failed": self.failed,
            "timed_out": self.timed_out, "rejected": self.rejected,
            "rejected_recent": self._rejected_recent.total(), "delayed": self.delayed,
            "delay_at": self.delay_at, "reject_at": self.reject_at,
            "oldest_age": self.oldest_age(),
        }
