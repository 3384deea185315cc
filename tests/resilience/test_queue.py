"""WorkQueue: priorities, per-item timeouts, failures, and backpressure that acts."""

from __future__ import annotations

import asyncio

import pytest

from stackmedic.resilience import QueueFullError, WorkQueue


def test_items_run_in_priority_order_then_fifo() -> None:
    """Queued items are handled lowest priority number first, FIFO within a priority."""
    handled: list[str] = []

    async def main() -> None:
        gate = asyncio.Event()

        async def handle(item: str) -> None:
            if item == "blocker":
                await gate.wait()
            handled.append(item)

        queue: WorkQueue[str] = WorkQueue("q", handle, capacity=10, workers=1)
        await queue.start()
        await queue.put("blocker")
        await asyncio.sleep(0.01)  # the single worker is now busy with the blocker
        for item, priority in [("low-1", 9), ("high-1", 0), ("mid", 5), ("high-2", 0),
                               ("low-2", 9)]:
            await queue.put(item, priority)
        gate.set()
        await queue.join()
        await queue.stop()

    asyncio.run(main())
    assert handled == ["blocker", "high-1", "high-2", "mid", "low-1", "low-2"]


def test_backpressure_rejects_at_reject_at_without_waiting() -> None:
    """At reject_at the producer gets QueueFullError at once and the rejection is counted."""

    async def main() -> WorkQueue[int]:
        queue: WorkQueue[int] = WorkQueue("q", lambda i: asyncio.sleep(60), capacity=4,
                                          workers=1, reject_at=0.5)
        for i in range(2):
            await queue.put(i)  # not started: nothing is consumed
        with pytest.raises(QueueFullError) as info:
            await queue.put(99)
        assert (info.value.size, info.value.capacity) == (2, 4)
        with pytest.raises(QueueFullError):
            queue.put_nowait(100)
        return queue

    metrics = asyncio.run(main()).metrics()
    assert (metrics["size"], metrics["rejected"], metrics["rejected_recent"]) == (2, 2, 2)


def test_backpressure_delays_producers_until_consumers_catch_up() -> None:
    """Above delay_at a put waits for the queue to drain and then succeeds."""

    async def main() -> tuple[int, int, int]:
        release = asyncio.Event()

        async def handle(_item: int) -> None:
            await release.wait()

        queue: WorkQueue[int] = WorkQueue("q", handle, capacity=4, workers=1, delay_at=0.5,
                                          max_delay=30)
        await queue.start()
        for i in range(3):  # one goes to the worker, two stay queued: at delay_at
            await queue.put(i)
            await asyncio.sleep(0.01)
        delayed = asyncio.create_task(queue.put(3))
        await asyncio.sleep(0.05)
        waiting = not delayed.done()
        release.set()
        await delayed
        await queue.join()
        await queue.stop()
        return int(waiting), queue.delayed, queue.processed

    assert asyncio.run(main()) == (1, 1, 4)


def test_delayed_producer_is_rejected_when_the_queue_stays_full() -> None:
    """A producer delayed for max_delay with no progress gets QueueFullError."""

    async def main() -> int:
        queue: WorkQueue[int] = WorkQueue("q", lambda i: asyncio.sleep(60), capacity=2,
                                          workers=1, delay_at=0.5, max_delay=0.05)
        await queue.put(1)
        with pytest.raises(QueueFullError):
            await queue.put(2)
        return queue.rejected

    assert asyncio.run(main()) == 1


def test_item_timeouts_and_failures_are_counted_and_workers_survive() -> None:
    """A handler past item_timeout counts as timed out, one that raises as failed."""

    async def handle(item: str) -> None:
        if item == "slow":
            await asyncio.sleep(60)
        if item == "bad":
            raise ValueError(item)

    async def main() -> dict[str, object]:
        queue: WorkQueue[str] = WorkQueue("q", handle, workers=1, item_timeout=0.05)
        await queue.start()
        for item in ("slow", "bad", "good"):
            await queue.put(item)
        await queue.join()
        await queue.stop()
        return queue.metrics()

    m = asyncio.run(main())
    assert (m["timed_out"], m["failed"], m["processed"], m["size"]) == (1, 1, 1, 0)
