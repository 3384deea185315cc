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
