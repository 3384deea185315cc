"""Per-operation latency over a sliding window: percentiles, counts and error rate.

    tracker = LatencyTracker()
    with tracker.track("checkout"):
        ...
    tracker.snapshot()["checkout"]   # {"count", "errors", "error_rate", "p50", "p95", ...}

Each operation keeps `slices` log-bucket sketches covering `window` seconds; a
snapshot merges the live ones. Recording takes no lock: it reads the clock (so a value
always lands in the slice it was recorded in) and, while the slice lasts, counts the
value in the operation's accumulator. A new operation or a slice to rotate takes the
slow path under the operation's lock; reads drain the accumulators into the sketches.

With the C speedups (`_speedups.c`, built by setup.py where a compiler is available)
`record` is one C call: the accumulator counts by bucket key in a C table, so no
Python object is made per value, and a record never interleaves with a drain. Without
them the same steps run in Python: values are appended to a list and sketched `_BATCH`
at a time (`LogSketch.add_many`), and an error counted by one thread while another
drains may now and then be lost, which moves an error rate by nothing measurable.

Measured (bench/bench_latency.py, 2026-11-22 07:51, shared 2-core machine): `record()`
91 ns net of the harness with the C speedups, 303 ns without, against 675 for
ddsketch's `add` (0.13x and 0.45x).
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from stackmedic.observe._accel import speedups
from stackmedic.observe._sketch import _BATCH as _SKETCH_BATCH
from stackmedic.observe._sketch import LogSketch

__all__ = ["LatencyTracker", "OperationStats", "default_tracker", "track"]

P = ParamSpec("P")
T = TypeVar("T")
_now = time.monotonic
# The C Recorder reads CLOCK_MONOTONIC itself only where that is time.monotonic's clock
# (not on macOS, whose time.monotonic is mach_absolute_time: slice ends would be set
# and checked on two different clocks); elsewhere it calls time.monotonic.
_C_CLOCK_IS_MONOTONIC = (time.get_clock_info("monotonic").implementation
                         == "clock_gettime(CLOCK_MONOTONIC)")
# Values the Python path buffers per operation before it sketches them: big enough to
# amortise the batch set-up, small enough to stay in cache (2 KiB of pointers).
_BATCH = _SKETCH_BATCH


def _seconds(seconds: float) -> float:
    """`seconds` as a float, as the C path converts it (a str is refused, not parsed)."""
    if isinstance(seconds, str | bytes | bytearray):  # float() would parse them
        raise TypeError(f"seconds must be a number, not {type(seconds).__name__}")
    return float(seconds)


class _PyAccumulator:
    """`_speedups.Accumulator` in Python: one operation's current slice, as values
    buffered by `LatencyTracker.record` and batches already sketched."""

    __slots__ = ("_counted", "errors", "slice_end", "values")

    def __init__(self, slice_end: float, alpha: float) -> None:
        self.slice_end = slice_end
        self.values: list[float] = []  # appended to by the fast path, up to _BATCH
        self.errors = 0
        self._counted = LogSketch(alpha)

    def __len__(self) -> int:
        return len(self.values) + self._counted.count

    def add(self, seconds: float, error: bool = False) -> None:
        if len(self.values) >= _BATCH:
            self._count()
        self.values.append(_seconds(seconds))
        self.errors += bool(error)

    def _count(self) -> None:
        values = self.values
        n = len(values)
        self._counted.add_many(values[:n])
        del values[:n]  # values appended meanwhile stay for the next batch

    def drain_into(self, sketch: LogSketch) -> int:
        self._count()
        sketch.merge(self._counted)
        self._counted.clear()
        errors, self.errors = self.errors, 0
        return errors


class OperationStats:
    """The ring of per-slice sketches and error counts of one operation, and the
    accumulator counting its current slice until the next read or rotation."""

    __slots__ = ("_alpha", "_index", "_lock", "_sketches", "_slice_len", "accumulator",
                 "current", "errors")

    def __init__(self, slices: int, slice_len: float, alpha: float, now: float, *,
                 accelerated: bool) -> None:
        self._alpha = alpha
        self._slice_len = slice_len
        self._sketches = [LogSketch(alpha) for _ in range(slices)]
        self._lock = threading.Lock()
        self.errors = [0] * slices  # one counter per slice, newest first
        self._index = 0
        self.current = self._sketches[0]
        self.accumulator = (speedups.Accumulator(now + slice_len, *self.current.key_layout)
                            if accelerated and speedups else
                            _PyAccumulator(now + slice_len, alpha))

    def add(self, seconds: float, error: bool, now: float) -> None:
        """The slow path of a record: rotate if the slice is over, then count the value."""
        with self._lock:
            if now >= self.accumulator.slice_end:
                self._rotate(now)
            self.accumulator.add(seconds, error)

    def _drain(self) -> None:
        """Move what the accumulator counted into the current slice."""
        self.errors[0] += self.accumulator.drain_into(self.current)

    def _rotate(self, now: float) -> None:
        """Start a new slice (dropping the oldest) for each slice length that passed."""
        accumulator = self.accumulator
        self._drain()
        passed = int((now - accumulator.slice_end) // self._slice_len) + 1
        for _ in range(min(len(self._sketches), passed)):
            self._index = (self._index + 1) % len(self._sketches)
            # Reused, not replaced: the sketch keeps its batch buffers.
            self._sketches[self._index].clear()
            self.errors.insert(0, 0)
            self.errors.pop()
        self.current = self._sketches[self._index]
        accumulator.slice_end += self._slice_len * passed  # last: reopens the fast path

    def merged(self, now: float) -> tuple[LogSketch, int]:
        """One sketch of the whole window and its error count."""
        total = LogSketch(self._alpha)
        with self._lock:
            if now >= self.accumulator.slice_end:
                self._rotate(now)
            self._drain()
            for sketch in self._sketches:
                total.merge(sketch)
            return total, sum(self.errors)


class LatencyTracker:
    """Latency percentiles and error rates per operation over the last `window` seconds."""

    def __init__(self, *, window: float = 60.0, slices: int = 6, alpha: float = 0.01,
                 clock: Callable[[], float] = _now) -> None:
        self.window = window
        self._slices = slices
        self._alpha = alpha
        self._clock = clock
        self._ops: dict[str, OperationStats] = {}
        # operation -> its accumulator, read by the fast path without a lock
        self._accumulators: dict[str, Any] = {}
        self._new_lock = threading.Lock()
        self._accelerated = speedups is not None  # decided once: C and Python don't mix
        # Not when a subclass overrides `record`: the instance attribute would hide it.
        if speedups is not None and type(self).record is LatencyTracker.record:
            self.record = speedups.Recorder(  # type: ignore[method-assign]
                self._accumulators, self._record_slow,
                None if clock is _now and _C_CLOCK_IS_MONOTONIC else clock)

    def record(self, operation: str, seconds: float, error: bool = False) -> None:
        """Count one call of `operation` that took `seconds` (and failed if `error`)."""
        # The Python fast path (the C one is `_speedups.Recorder`); inlined, because a
        # Python call is a third of the budget.
        # Reached with C accumulators too (`super().record(...)` from a subclass, or
        # `LatencyTracker.record(tracker, ...)`): they have no `values`, so slow path.
        try:
            accumulator = self._accumulators[operation]
            values = accumulator.values
        except (KeyError, AttributeError):
            return self._record_slow(operation, seconds, error)
        if (self._clock() >= accumulator.slice_end or len(values) >= _BATCH
                or seconds.__class__ is not float):  # the slow path converts or refuses
            return self._record_slow(operation, seconds, error)
        values.append(seconds)
        if error:
            accumulator.errors += 1
        return None

    def _record_slow(self, operation: str, seconds: float, error: bool = False) -> None:
        # Converted before a new operation is made: a refused record leaves no trace,
        # whichever path (C positional, C with keywords, Python) it came by.
        seconds, error = _seconds(seconds), bool(error)
        stats = self._ops.get(operation) or self._stats(operation)
        stats.add(seconds, error, self._clock())

    def _stats(self, operation: str) -> OperationStats:
        with self._new_lock:
            stats = self._ops.get(operation)
            if stats is None:
                stats = self._ops[operation] = OperationStats(
                    self._slices, self.window / self._slices, self._alpha, self._clock(),
                    accelerated=self._accelerated)
                self._accumulators[operation] = stats.accumulator
            return stats

    def track(self, operation: str) -> _Timer:
        """Time a block (`with`/`async with`) or every call of a function (decorator)."""
        return _Timer(self, operation)

    def sketch(self, operation: str) -> LogSketch:
        """The merged window sketch of `operation` (empty if never seen)."""
        stats = self._ops.get(operation)
        return stats.merged(self._clock())[0] if stats else LogSketch(self._alpha)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per operation: count, errors, error_rate, mean, p50, p95, p99, max (seconds)."""
        now = self._clock()
        out: dict[str, dict[str, Any]] = {}
        for name, stats in sorted(self._ops.items()):
            sketch, errors = stats.merged(now)
            n = sketch.count
            out[name] = {
                "count": n, "errors": errors, "error_rate": errors / n if n else 0.0,
                "mean": sketch.sum / n if n else None,
                "p50": sketch.quantile(0.5), "p95": sketch.quantile(0.95),
                "p99": sketch.quantile(0.99), "max": sketch.max if n else None,
                "window_seconds": self.window,
            }
        return out


class _Timer:
    """`tracker.track(op)`: a context manager and a decorator in one."""

    __slots__ = ("_operation", "_start", "_tracker")

    def __init__(self, tracker: LatencyTracker, operation: str) -> None:
        self._tracker = tracker
        self._operation = operation

    def __enter__(self) -> _Timer:
        self._start = _now()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._tracker.record(self._operation, _now() - self._start, exc is not None)

    async def __aenter__(self) -> _Timer:
        return self.__enter__()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(kind, exc, tb)

    def __call__(self, func: Callable[P, T]) -> Callable[P, T]:
        record, operation = self._tracker.record, self._operation
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def timed_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                start = _now()
                try:
                    result = await func(*args, **kwargs)
                except BaseException:
                    record(operation, _now() - start, True)
                    raise
                record(operation, _now() - start, False)
                return result
            return timed_async  # type: ignore[return-value]

        @functools.wraps(func)
        def timed(*args: P.args, **kwargs: P.kwargs) -> T:
            start = _now()
            try:
                result = func(*args, **kwargs)
            except BaseException:
                record(operation, _now() - start, True)
                raise
            record(operation, _now() - start, False)
            return result
        return timed


_DEFAULT = LatencyTracker()


def default_tracker() -> LatencyTracker:
    """The process-wide tracker that `track()` and the default diagnostics use."""
    return _DEFAULT


def track(operation: str) -> _Timer:
    """`@track("op")` / `with track("op"):` on the process-wide tracker."""
    return _DEFAULT.track(operation)
