"""Errors the resilience primitives raise.

    ResilienceError                 base of everything below (a StackmedicError)
    ├── CircuitOpenError            a breaker refused the call (.name, .retry_after)
    ├── BulkheadFullError           no slot free within the wait (.name, .max_concurrent)
    ├── QueueFullError              backpressure rejected an item (.name, .size, .capacity)
    ├── RateLimitedError            no token available in time (.name, .retry_after)
    └── OperationTimeoutError       the call outlived its timeout (.name, .timeout)

Every error carries the operation name so a log line says which dependency refused.
Messages are built in `__str__`, not in `__init__`: an open breaker raises millions of
these, and formatting a message nobody reads tripled the cost of a rejection.
"""

from __future__ import annotations

from stackmedic.errors import StackmedicError

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "OperationTimeoutError",
    "QueueFullError",
    "RateLimitedError",
    "ResilienceError",
]


class ResilienceError(StackmedicError):
    """Base of the errors raised by `stackmedic.resilience`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return self.message()

    def message(self) -> str:
        return f"{self.name!r} failed"


class CircuitOpenError(ResilienceError):
    """The breaker `name` is open; try again in `retry_after` seconds (None: unknown).

    Built by BaseException's C `__init__` (the attributes read `args`): a Python
    `__init__` doubled the cost of a rejection, the one path an open breaker runs.
    """

    __init__ = Exception.__init__

    @property
    def name(self) -> str:  # type: ignore[override]
        return str(self.args[0])

    @property
    def retry_after(self) -> float | None:
        value = self.args[1]
        return None if value is None else float(value)

    def message(self) -> str:
        when = f"; retry in {self.retry_after:.3f}s" if self.retry_after is not None else ""
        return f"circuit {self.name!r} is open{when}"


class BulkheadFullError(ResilienceError):
    """All `max_concurrent` slots of bulkhead `name` stayed busy for the whole wait."""

    def __init__(self, name: str, max_concurrent: int) -> None:
        self.max_concurrent = max_concurrent
        super().__init__(name)

    def message(self) -> str:
        return f"bulkhead {self.name!r} is full ({self.max_concurrent} in flight)"


class QueueFullError(ResilienceError):
    """Queue `name` rejected an item: `size` of `capacity` is over its backpressure level."""

    def __init__(self, name: str, size: int, capacity: int) -> None:
        self.size = size
        self.capacity = capacity
        super().__init__(name)

    def message(self) -> str:
        return f"queue {self.name!r} rejected work ({self.size}/{self.capacity} queued)"


class RateLimitedError(ResilienceError):
    """Rate limiter `name` has no permit; one frees up in `retry_after` seconds."""

    def __init__(self, name: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(name)

    def message(self) -> str:
        return f"rate limit {self.name!r} exceeded; retry in {self.retry_after:.3f}s"


class OperationTimeoutError(ResilienceError):
    """Operation `name` did not finish within `timeout` seconds."""

    def __init__(self, name: str, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(name)

    def message(self) -> str:
        return f"{self.name!r} timed out after {self.timeout:.3f}s"
