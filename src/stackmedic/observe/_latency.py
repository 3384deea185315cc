"""Per-operation latency over a sliding window: percentiles, counts and error rate.

    tracker = LatencyTracker()
    with tracker.track("checkout"):
        ...
    tracker.snapshot()["checkout"]   # {"count", "errors", "error_rate", "p50", "p95", ...}

Each operation keeps `slices` log-bucket sketches covering `window` seconds; a
snapshot merges the live ones. `record()` takes no lock: under thread contention a
count may be lost now and then (a dict increment is not atomic), which moves a
percentile by nothing measurable and is what makes it cheap enough to leave on.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from stackmedic.observe._sketch import LogSketch

__all__ = ["LatencyTracker", "OperationStats", "default_tracker", "track"]

P = ParamSpec("P")
T = TypeVar("T")
_now = time.monotonic


class OperationStats:
    """The ring of per-slice sketches and error counts of one operation."""

    __slots__ = ("_alpha", "_index", "_sketches", "_slice_len", "current", "errors", "slice_end")

    def __init__(self, slices: int, slice_len: float, alpha: float, now: float) -> None:
        self._alpha = alpha
        self._slice_len = slice_len
        self._sketches = [LogSketch(alpha) for _ in range(slices)]
        self.errors = [0] * slices  # one counter per slice; `errors[0]` is current
        self._index = 0
        self.current = self._sketches[0]
        self.slice_end = now + slice_len

    def rotate(self, now: float) -> None:
        """Start a new slice (dropping the oldest) for each slice length that passed."""
        passed = int((now - self.slice_end) // self._slice_len) + 1
        for _ in range(min(len(self._sketches), passed)):
            self._index = (self._index + 1) % len(self._sketches)
            self._sketches[self._index] = LogSketch(self._alpha)
            # Errors are kept newest-first so the hot path can always bump errors[0].
            self.errors.insert(0, 0)
            self.errors.pop()
        self.current = self._sketches[self._index]
        self.slice_end += self._slice_len * passed

    def merged(self, now: float) -> tuple[LogSketch, int]:
        """One sketch of the whole window and its error count."""
        if now >= self.slice_end:
            self.rotate(now)
        total = LogSketch(self._alpha)
        for sketch in list(self._sketches):
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

    def record(self, operation: str, seconds: float, error: bool = False) -> None:
        """Count one call of `operation` that took `seconds` (and failed if `error`)."""
        now = self._clock()
        stats = self._ops.get(operation)
        if stats is None:
            stats = self._ops.setdefault(operation, OperationStats(
                self._slices, self.window / self._slices, self._alpha, now))
        # Inlined rather than a method of OperationStats: one call less is ~15% here.
        if now >= stats.slice_end:
            stats.rotate(now)
        stats.current.add(seconds)
        if error:
            stats.errors[0] += 1

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
