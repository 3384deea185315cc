"""LatencyTracker and its log-bucket sketch: accuracy, merging, windows, decorators."""

from __future__ import annotations

import asyncio
import random

import pytest

from stackmedic.observe import LatencyTracker, LogSketch

pytestmark = pytest.mark.usefixtures("implementation")  # each test on both paths


def exact(values: list[float], q: float) -> float:
    return sorted(values)[int(q * (len(values) - 1))]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sketch_quantiles_are_within_one_percent_relative_error(seed: int) -> None:
    """p50/p95/p99/p99.9 of 50,000 lognormal latencies are within 1% of the exact values."""
    rng = random.Random(seed)
    values = [rng.lognormvariate(-4, 1.2) for _ in range(50_000)]
    sketch = LogSketch(0.01)
    for v in values:
        sketch.add(v)
    for q in (0.5, 0.95, 0.99, 0.999):
        estimate = sketch.quantile(q)
        assert estimate is not None
        assert abs(estimate - exact(values, q)) / exact(values, q) <= 0.01, q


def test_merged_sketches_equal_one_sketch_of_all_values() -> None:
    """Merging per-shard sketches gives the same quantiles as one sketch, also via JSON."""
    rng = random.Random(7)
    shards = [[rng.expovariate(20) for _ in range(5000)] for _ in range(4)]
    whole, merged = LogSketch(), LogSketch()
    for shard in shards:
        part = LogSketch()
        for v in shard:
            part.add(v)
            whole.add(v)
        merged.merge(LogSketch.from_dict(part.to_dict()))
    assert merged.count == whole.count == 20_000
    for q in (0.5, 0.9, 0.99):
        assert merged.quantile(q) == whole.quantile(q)
    with pytest.raises(ValueError):
        merged.merge(LogSketch(0.02))


def test_empty_and_zero_values() -> None:
    """An empty sketch has no quantile; zero durations count as zero."""
    sketch = LogSketch()
    assert sketch.quantile(0.5) is None
    sketch.add(0.0)
    sketch.add(0.0)
    sketch.add(1.0)
    assert sketch.quantile(0.5) == 0.0 and sketch.quantile(1.0) == pytest.approx(1.0, rel=0.01)


def test_tracker_window_forgets_old_slices() -> None:
    """Calls older than the window drop out of the snapshot, slice by slice."""
    now = [0.0]
    tracker = LatencyTracker(window=60, slices=6, clock=lambda: now[0])
    for _ in range(10):
        tracker.record("db", 0.5, error=True)
    now[0] = 30
    for _ in range(10):
        tracker.record("db", 0.01)
    snap = tracker.snapshot()["db"]
    assert (snap["count"], snap["errors"], snap["error_rate"]) == (20, 10, 0.5)
    now[0] = 65  # the first ten are now older than 60 s
    snap = tracker.snapshot()["db"]
    assert (snap["count"], snap["errors"]) == (10, 0)
    assert snap["p99"] == pytest.approx(0.01, rel=0.01)
    now[0] = 1000
    assert tracker.snapshot()["db"]["count"] == 0


def test_track_decorator_and_context_manager_count_calls_and_errors() -> None:
    """@track and `with track()` time sync and async code and count raised errors."""
    tracker = LatencyTracker()

    @tracker.track("sync")
    def ok() -> int:
        return 1

    @tracker.track("async")
    async def fails() -> None:
        raise RuntimeError

    ok()
    with pytest.raises(RuntimeError):
        asyncio.run(fails())
    with pytest.raises(KeyError), tracker.track("block"):
        raise KeyError
    snap = tracker.snapshot()
    assert {op: (s["count"], s["errors"]) for op, s in snap.items()} == {
        "async": (1, 1), "block": (1, 1), "sync": (1, 0)}


def test_concurrent_records_are_all_counted() -> None:
    """Values recorded from many threads at once, across batch flushes, are all counted."""
    import threading

    tracker = LatencyTracker()
    barrier = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(10_000):
            tracker.record("op", rng.expovariate(50))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.snapshot()["op"]["count"] == 80_000


def test_buffered_adds_are_visible_to_every_read() -> None:
    """Values still pending in a sketch show in count, sum, max, buckets and to_dict."""
    sketch = LogSketch()
    for v in (0.5, 0.25, 0.0):
        sketch.add(v)
    assert (sketch.count, sketch.sum, sketch.max, sketch.zeros) == (3, 0.75, 0.5, 1)
    assert sum(sketch.buckets.values()) == 2
    assert LogSketch.from_dict(sketch.to_dict()).quantile(1.0) == 0.5


@pytest.mark.parametrize("alpha", [0.1, 0.05, 0.01, 0.001, 0.0002])
def test_batches_bucket_like_single_values_and_keep_the_exact_max(alpha: float) -> None:
    """Batch keys equal one-value keys, each bucket holds its values, the max stays exact."""
    rng = random.Random(11)
    values = [rng.lognormvariate(rng.uniform(-9, 2), rng.uniform(0.1, 2.5)) for _ in range(3000)]
    values[::100] = [0.0, -1.0, float("nan"), float("inf"), 2.0 ** -40] * 6  # count as zero
    fed = values + sorted(values[1:1000])  # rising batches move the max gate often
    batched, single = LogSketch(alpha), LogSketch(alpha)
    for v in fed:
        batched.add(v)
        single._add_one(v)
    valid = [v for v in fed if 2.0 ** -31 <= v < 2.0 ** 1009]
    assert batched.buckets == single.buckets
    assert batched.zeros == single.zeros == len(fed) - len(valid) > 30
    assert batched.max == single.max == max(valid)
    for v in valid:
        lo, hi = batched.bounds(single._key(v))
        assert lo <= v < hi and hi / lo <= 1 + 2 * alpha
