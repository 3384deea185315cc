"""Compose the primitives around one call, in the order that makes each one work.

    charge = pipeline("payments", fallback=..., retry=..., breaker=..., rate_limiter=...,
                      time_limiter=..., bulkhead=..., tracker=tracker)
    receipt = await charge.call_async(gateway.charge, order)

From the outside in (Resilience4j's order): latency tracking of what the caller
experiences, fallback, retry, circuit breaker, rate limiter, time limit, bulkhead.
So a retry never goes through an open breaker (the breaker is inside it and its
CircuitOpenError is not retried), every attempt is judged by the breaker, and the
time limit bounds one attempt, not the whole sequence.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, Protocol, TypeVar

from stackmedic.resilience._decorate import decorate

__all__ = ["Pipeline", "pipeline"]

P = ParamSpec("P")
T = TypeVar("T")


class _Layer(Protocol):
    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...

    async def call_async(self, func: Callable[..., Awaitable[Any]], /, *args: Any,
                         **kwargs: Any) -> Any: ...


class _Tracker(Protocol):
    def record(self, operation: str, seconds: float, error: bool = False) -> None: ...


class Pipeline:
    """Primitives wrapped around calls under one operation name."""

    def __init__(self, name: str, layers: list[_Layer], tracker: _Tracker | None) -> None:
        self.name = name
        self.layers = layers  # outermost first
        self.tracker = tracker

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        # Every layer gets the call's arguments: a Fallback keys its cache and calls its
        # handler with them (bound into the innermost call, every caller shared one entry).
        call: Callable[..., Any] = func
        for layer in reversed(self.layers):
            call = functools.partial(layer.call, call)
        start = time.monotonic()
        try:
            result: T = call(*args, **kwargs)
        except BaseException:
            self._record(start, True)
            raise
        self._record(start, False)
        return result

    async def call_async(self, func: Callable[P, Awaitable[T]], /, *args: P.args,
                         **kwargs: P.kwargs) -> T:
        call: Callable[..., Awaitable[Any]] = func
        for layer in reversed(self.layers):
            call = functools.partial(layer.call_async, call)
        start = time.monotonic()
        try:
            result: T = await call(*args, **kwargs)
        except BaseException:
            self._record(start, True)
            raise
        self._record(start, False)
        return result

    def _record(self, start: float, error: bool) -> None:
        if self.tracker is not None:
            self.tracker.record(self.name, time.monotonic() - start, error)

    def __call__(self, func: Callable[P, T]) -> Callable[P, T]:
        """Decorator form for plain and `async def` functions."""
        return decorate(self, func)


def pipeline(name: str, *, fallback: _Layer | None = None, retry: _Layer | None = None,
             breaker: _Layer | None = None, rate_limiter: _Layer | None = None,
             time_limiter: _Layer | None = None, bulkhead: _Layer | None = None,
             tracker: _Tracker | None = None) -> Pipeline:
    """A `Pipeline` named `name` of the given primitives, in the documented order."""
    layers = [layer for layer in (fallback, retry, breaker, rate_limiter, time_limiter, bulkhead)
              if layer is not None]
    return Pipeline(name, layers, tracker)
