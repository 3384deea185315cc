"""Latency recording side by side: stackmedic's LogSketch/LatencyTracker, ddsketch, HdrHistogram.
Run: `.venv/bin/python bench/bench_latency.py [--record]` (peers: `pip install ddsketch
hdrhistogram`, the `bench` extra); `--record` appends the table to bench/RESULTS.md.

Measures, in one process:
  rows       LatencyTracker with the C speedups and, in the same run, without them
  ns/record   CPU ns per `lambda: recorder(next_value())`, the values cycling through the
              lognormal data below (a constant would hit one bucket every time), median
              of REPEAT rounds interleaved across recorders
  net         the same minus the harness alone (`lambda: next_value()`), i.e. the cost
              of the recording call as a caller pays it
  err p50/p95/p99   relative error of each quantile against the exact value, on
              200,000 lognormal latencies (median ~18 ms, long tail), the same data for all
HdrHistogram records integers: latencies go in as microseconds, 3 significant figures.
"""

from __future__ import annotations

import itertools
import random
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from _results import Results

from stackmedic.observe import _accel, _latency

N = 100_000
REPEAT = 15


def once_ns(func: Callable[[], Any]) -> float:
    # CPU time, not wall time: on a shared machine time spent descheduled is noise.
    return timeit.timeit(func, number=N, timer=time.process_time) / N * 1e9


@contextmanager
def _pure_python() -> Iterator[None]:
    """Trackers made inside take the pure-Python path (STACKMEDIC_PURE_PYTHON, in-process)."""
    saved, _latency.speedups = _latency.speedups, None
    try:
        yield
    finally:
        _latency.speedups = saved


def data() -> list[float]:
    rng = random.Random(42)
    return [rng.lognormvariate(-4, 1.0) for _ in range(200_000)]


def exact(values: list[float], q: float) -> float:
    return sorted(values)[int(q * (len(values) - 1))]


TARGET_NS = 200  # issue 6: LatencyTracker.record() at most 200 ns


def main(record: bool) -> None:
    from stackmedic.observe import LatencyTracker, LogSketch

    values = data()
    nxt = itertools.cycle(values).__next__
    micros = itertools.cycle([max(1, int(v * 1e6)) for v in values]).__next__
    rows: list[tuple[str, Callable[[], Any]]] = [("(harness: next value)", lambda: nxt())]
    tracker = LatencyTracker()
    rows.append(("stackmedic LatencyTracker.record", lambda: tracker.record("op", nxt())))
    if _accel.speedups is not None:  # the pure-Python fallback, in the same run
        with _pure_python():
            python_tracker = LatencyTracker()
        rows.append(("stackmedic LatencyTracker.record, Python",
                     lambda: python_tracker.record("op", nxt())))
    sketch = LogSketch(0.01)
    rows.append(("stackmedic LogSketch.add", lambda: sketch.add(nxt())))
    try:
        from ddsketch import DDSketch

        dd = DDSketch(relative_accuracy=0.01)
        rows.append(("ddsketch DDSketch.add", lambda: dd.add(nxt())))
    except ImportError as err:
        print(f"skipped ddsketch: {err}")
    try:
        from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

        hdr = HdrHistogram(1, 3_600_000_000, 3)
        rows.append(("hdrhistogram record_value", lambda: hdr.record_value(micros())))
    except ImportError as err:
        print(f"skipped hdrhistogram: {err}")

    samples: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _ in range(REPEAT):
        for name, record in rows:
            samples[name].append(once_ns(record))
    cost = {name: statistics.median(v) for name, v in samples.items()}
    harness = cost.pop("(harness: next value)")
    out = Results("latency recording vs ddsketch and hdrhistogram")
    out.say(f"{REPEAT} rounds of {N:,} calls, medians of CPU time; harness {harness:.0f} ns")
    out.say(f"{'recorder':<44}{'ns/record':>10}{'net':>6}{'err p50':>10}{'err p95':>10}"
            f"{'err p99':>10}")
    for name, _ in rows[1:]:
        errors = accuracy(name, values)  # fresh recorders, all fed the same data
        out.say(f"{name:<44}{cost[name]:>10.0f}{cost[name] - harness:>6.0f}"
                + "".join(f"{e:>10.3%}" for e in errors))
    ours = cost["stackmedic LatencyTracker.record"] - harness
    verdict = "met" if ours <= TARGET_NS else "NOT met"
    peers = "".join(f", {ours / (cost[name] - harness):.2f}x {name.split()[0]}"
                    for name in cost if not name.startswith("stackmedic"))
    out.say(f"record() {ours:.0f} ns net: target <= {TARGET_NS} ns {verdict}{peers}")
    if record:
        out.record("python bench/bench_latency.py --record")


def accuracy(name: str, values: list[float]) -> list[float]:
    from stackmedic.observe import LatencyTracker, LogSketch

    quantile: Callable[[float], float]
    if name.startswith("stackmedic LatencyTracker"):
        tracker = LatencyTracker()
        for v in values:
            tracker.record("op", v)
        sketch = tracker.sketch("op")
        quantile = lambda q: sketch.quantile(q) or 0.0  # noqa: E731
    elif name.startswith("stackmedic"):
        own = LogSketch(0.01)
        for v in values:
            own.add(v)
        quantile = lambda q: own.quantile(q) or 0.0  # noqa: E731
    elif name.startswith("ddsketch"):
        from ddsketch import DDSketch

        dd = DDSketch(relative_accuracy=0.01)
        for v in values:
            dd.add(v)
        quantile = lambda q: float(dd.get_quantile_value(q) or 0.0)  # noqa: E731
    else:
        from hdrh.histogram import HdrHistogram

        hdr = HdrHistogram(1, 3_600_000_000, 3)
        for v in values:
            hdr.record_value(max(1, int(v * 1e6)))
        quantile = lambda q: hdr.get_value_at_percentile(q * 100) / 1e6  # noqa: E731
    return [abs(quantile(q) - exact(values, q)) / exact(values, q) for q in (0.5, 0.95, 0.99)]


if __name__ == "__main__":
    main("--record" in sys.argv[1:])
