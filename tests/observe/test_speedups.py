"""The C speedups: built here, and the same results as the pure-Python path."""

from __future__ import annotations

import os
import random
import threading
from typing import Any

import pytest

from stackmedic.observe import LatencyTracker, _accel, _latency, _sketch


def test_the_c_speedups_are_built_and_used() -> None:
    """A checkout installed with `make` gets the extension, so CI exercises both paths."""
    if os.environ.get("STACKMEDIC_PURE_PYTHON", "") not in ("", "0"):
        pytest.skip("STACKMEDIC_PURE_PYTHON is set")
    assert _accel.speedups is not None, "stackmedic.observe._speedups was not built"
    assert type(LatencyTracker().record).__name__ == "Recorder"


def record_script(seed: int) -> list[tuple[float, str, Any, bool]]:
    """(clock, operation, seconds, error): rotations, zeros, garbage-free, three ops."""
    rng = random.Random(seed)
    script, now = [], 0.0
    for _ in range(20_000):
        now += rng.expovariate(400)  # ~50 s in all: several 10 s slices rotate
        value: Any = rng.choice([rng.lognormvariate(-4, 1.5), rng.expovariate(3), 0.0,
                                 float("nan"), -1.0, 2, 10 ** 400 / 10 ** 399])
        script.append((now, rng.choice(["db", "http", "cache"]), value, rng.random() < 0.1))
    return script


def replay(script: list[tuple[float, str, Any, bool]]) -> list[dict[str, Any]]:
    now = [0.0]
    tracker = LatencyTracker(window=60, slices=6, clock=lambda: now[0])
    snapshots = []
    for i, (at, operation, value, error) in enumerate(script):
        now[0] = at
        tracker.record(operation, value, error)
        if i % 5000 == 4999:
            snapshots.append(tracker.snapshot())
    now[0] += 35  # the oldest slices age out
    snapshots.append(tracker.snapshot())
    return snapshots


@pytest.mark.parametrize("seed", [1, 2])
def test_c_and_python_trackers_report_the_same(seed: int, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    """One script of records (three operations, errors, zeros, NaN, ints, slice
    rotations) gives identical snapshots on both paths, sums aside (summed in another
    order)."""
    if _accel.speedups is None:
        pytest.skip("the C speedups are not built here")
    script = record_script(seed)
    fast = replay(script)
    monkeypatch.setattr(_latency, "speedups", None)
    monkeypatch.setattr(_sketch, "speedups", None)
    slow = replay(script)
    for got, want in zip(fast, slow, strict=True):
        assert got.keys() == want.keys()
        for operation in got:
            mean_got, mean_want = got[operation].pop("mean"), want[operation].pop("mean")
            assert got[operation] == want[operation]
            assert mean_got == pytest.approx(mean_want, rel=1e-9)
    assert sum(s["count"] for s in fast[-2].values()) > 10_000


@pytest.mark.usefixtures("implementation")
def test_keywords_and_conversions_behave_like_the_python_signature() -> None:
    """Keywords, ints and bools are accepted; a non-number is refused with TypeError and
    leaves what was recorded intact."""
    tracker = LatencyTracker()
    tracker.record("op", 0.5)
    tracker.record(operation="op", seconds=1, error=True)
    tracker.record("op", 0.25, error=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tracker.record("op", "slow")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tracker.record("op", 0.1, True, "extra")  # type: ignore[call-arg]
    snap = tracker.snapshot()["op"]
    assert (snap["count"], snap["errors"], snap["max"]) == (3, 2, 1.0)


def test_c_counts_every_error_while_reads_drain() -> None:
    """With the C path a record never interleaves with a drain: errors recorded from
    eight threads while another reads in a loop are all counted."""
    if _accel.speedups is None:
        pytest.skip("the C speedups are not built here")
    tracker = LatencyTracker()
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            tracker.snapshot()

    def writer() -> None:
        for _ in range(20_000):
            tracker.record("op", 0.001, True)

    read = threading.Thread(target=reader)
    read.start()
    writers = [threading.Thread(target=writer) for _ in range(8)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    read.join()
    snap = tracker.snapshot()["op"]
    assert snap["count"] == snap["errors"] == 160_000


def c_speedups() -> Any:
    if _accel.speedups is None:
        pytest.skip("the C speedups are not built here")
    return _accel.speedups


def test_accumulator_key_layout_is_checked_and_fixed_at_creation() -> None:
    """An Accumulator made by __new__ alone, or with a mask that drops b7, made key 0 (the
    table's empty slot) and lost values silently; __init__ called again changed the
    layout under the keys already counted."""
    speedups = c_speedups()
    with pytest.raises(TypeError):
        speedups.Accumulator.__new__(speedups.Accumulator)
    with pytest.raises(ValueError):
        speedups.Accumulator(1e300, 0, 12)
    with pytest.raises(ValueError):
        speedups.count_into({}, [0.5], 0, 12)
    fine, coarse = _sketch.LogSketch(0.01), _sketch.LogSketch(0.2)
    accumulator = speedups.Accumulator(1e300, *fine.key_layout)
    accumulator.add(0.7)
    accumulator.__init__(1e300, *coarse.key_layout)
    accumulator.add(0.7)
    accumulator.drain_into(fine)
    assert dict(fine.buckets) == {fine._key(0.7): 2}


@pytest.mark.usefixtures("implementation")
def test_bucket_counts_past_two_to_the_64_keep_adding() -> None:
    """Counts are Python ints (from_dict takes any): the C path refused them with
    OverflowError where `buckets[key] += n` adds."""
    one = _sketch.LogSketch()
    one.add_many([0.5])
    key = one._key(0.5)
    sketch = _sketch.LogSketch.from_dict({**one.to_dict(), "buckets": {str(key): 2 ** 64}})
    sketch.add_many([0.5])
    sketch.merge(one)
    assert sketch.buckets[key] == 2 ** 64 + 2


def test_drain_into_a_non_sketch_loses_nothing() -> None:
    speedups = c_speedups()
    accumulator = speedups.Accumulator(1e300, *_sketch.LogSketch().key_layout)
    accumulator.add(0.5, True)
    with pytest.raises(AttributeError):
        accumulator.drain_into(None)
    sketch = _sketch.LogSketch()
    assert (len(accumulator), accumulator.drain_into(sketch), sketch.count) == (1, 1, 1)


@pytest.mark.usefixtures("implementation")
def test_a_subclass_record_override_and_the_unbound_method_work() -> None:
    """The C Recorder, an instance attribute, hid a subclass's `record`; and the class's
    `record` (`super().record`, `LatencyTracker.record(t, ...)`) read `values` off a C
    accumulator."""

    class Doubling(LatencyTracker):
        def record(self, operation: str, seconds: float, error: bool = False) -> None:
            super().record(operation, seconds * 2, error)

    tracker = Doubling()
    tracker.record("op", 0.5)
    tracker.record("op", 0.5)
    plain = LatencyTracker()
    LatencyTracker.record(plain, "op", 0.5)
    LatencyTracker.record(plain, "op", 0.5, True)
    assert tracker.snapshot()["op"]["max"] == 1.0
    assert (plain.snapshot()["op"]["count"], plain.snapshot()["op"]["errors"]) == (2, 1)


@pytest.mark.usefixtures("implementation")
def test_a_refused_record_of_a_new_operation_leaves_no_trace() -> None:
    """Positional or keyword, C or Python: a refused value does not create the operation
    (the slow path used to make it before converting the value)."""
    tracker = LatencyTracker()
    with pytest.raises(TypeError):
        tracker.record("positional", "slow")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tracker.record(operation="keywords", seconds="slow")  # type: ignore[arg-type]
    assert tracker.snapshot() == {}
