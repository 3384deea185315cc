"""A command tracer: named operations with timed phases, the recent ones kept in a ring.

    tracer = Tracer(capacity=200)
    with tracer.trace("PlaceOrder", order_id=42) as trace:
        with trace.phase("validate"):
            ...
        with trace.phase("append_events"):
            ...
    tracer.recent(10)      # newest first: name, duration, status, phases, attributes

This is the event-sourcing guide's "command tracer": when a command is slow, the
phases say where the time went. Memory is bounded by `capacity` traces of at most
`max_phases` phases. When `opentelemetry` is installed and `otel=True`, every trace
and phase is also an OpenTelemetry span (phases are children of their trace; a trace
that raises records the exception and an error status), so the same code feeds an
existing tracing backend: through the global tracer provider, or the one passed as
`tracer_provider`. Without `otel` nothing is imported.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import TracebackType
from typing import Any

__all__ = ["Trace", "Tracer"]


class Trace:
    """One traced operation; `phase(name)` times a step inside it."""

    def __init__(self, tracer: Tracer, name: str, attributes: dict[str, Any]) -> None:
        self.name = name
        self.attributes = attributes
        self.started_at = time.time()
        self.phases: list[dict[str, Any]] = []
        self.duration: float | None = None
        self.error: str | None = None
        self._tracer = tracer
        self._start = time.monotonic()
        self._spans = ExitStack()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as phase `name` of this trace."""
        start = time.monotonic()
        with self._tracer._span(name):
            try:
                yield
            finally:
                if len(self.phases) < self._tracer.max_phases:
                    self.phases.append({"name": name,
                                        "duration": round(time.monotonic() - start, 6)})

    def __enter__(self) -> Trace:
        self._spans.enter_context(self._tracer._span(self.name, self.attributes))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.duration = time.monotonic() - self._start
        if exc is not None:
            self.error = f"{type(exc).__name__}: {exc}"[:200]
        self._spans.__exit__(kind, exc, tb)  # the span sees the exception, if any
        self._tracer._finish(self)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "started_at": self.started_at,
                "duration": None if self.duration is None else round(self.duration, 6),
                "status": "error" if self.error else "ok", "error": self.error,
                "attributes": {k: v if isinstance(v, int | float | str | bool) else str(v)
                               for k, v in self.attributes.items()},
                "phases": list(self.phases)}


class Tracer:
    """Keeps the last `capacity` traces and per-name counts."""

    def __init__(self, *, capacity: int = 200, max_phases: int = 50, otel: bool = False,
                 tracer_provider: Any = None) -> None:
        self.max_phases = max_phases
        self._ring: deque[Trace] = deque(maxlen=capacity)
        self._counts: dict[str, list[float]] = {}  # name -> [count, errors, total seconds]
        self._lock = threading.Lock()
        self._otel: Any = None
        if otel:
            try:
                from opentelemetry import trace as otel_trace
            except ImportError:
                pass
            else:
                self._otel = otel_trace.get_tracer("stackmedic",
                                                   tracer_provider=tracer_provider)

    def trace(self, name: str, **attributes: Any) -> Trace:
        """A trace of operation `name`, used as a context manager."""
        return Trace(self, name, attributes)

    @contextmanager
    def _span(self, name: str, attributes: dict[str, Any] | None = None) -> Iterator[None]:
        if self._otel is None:
            yield
            return
        with self._otel.start_as_current_span(name, attributes=_otel_attributes(attributes)):
            yield

    def _finish(self, trace: Trace) -> None:
        with self._lock:
            self._ring.append(trace)
            counts = self._counts.setdefault(trace.name, [0, 0, 0.0])
            counts[0] += 1
            counts[1] += 1 if trace.error else 0
            counts[2] += trace.duration or 0.0

    def recent(self, limit: int = 20, name: str | None = None) -> list[dict[str, Any]]:
        """The newest traces first (optionally of one operation)."""
        with self._lock:
            traces = [t for t in reversed(self._ring) if name is None or t.name == name]
        return [t.to_dict() for t in traces[:limit]]

    def stats(self) -> dict[str, dict[str, float]]:
        """Per operation since start: count, errors, mean duration in seconds."""
        with self._lock:
            return {name: {"count": c, "errors": e, "mean": total / c if c else 0.0}
                    for name, (c, e, total) in sorted(self._counts.items())}

    def metrics(self) -> dict[str, Any]:
        """For `Diagnostics.register("traces", tracer.metrics)`."""
        return {"stats": self.stats(), "recent": self.recent(10)}


def _otel_attributes(attributes: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v if isinstance(v, int | float | str | bool) else str(v)
            for k, v in (attributes or {}).items()}
