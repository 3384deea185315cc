"""Circuit breaker settings, states and snapshots (the data; the logic is in _breaker)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["BreakerConfig", "BreakerMetrics", "Rejected", "State"]


class State(enum.Enum):
    """Breaker states; the value is the code stored in the low bits of the token."""

    CLOSED = 0
    DISABLED = 1       # always permits, records nothing
    METRICS_ONLY = 2   # always permits, records and reports, never trips
    HALF_OPEN = 3
    OPEN = 4
    FORCED_OPEN = 5    # rejects until someone changes it by hand

    @property
    def label(self) -> str:
        return self.name.lower()


_BY_CODE = {s.value: s for s in State}
# Plain ints for the hot path: reading `State.OPEN.value` costs more than the check.
_CLOSED, _DISABLED, _HALF_OPEN, _OPEN = (State.CLOSED.value, State.DISABLED.value,
                                         State.HALF_OPEN.value, State.OPEN.value)
_PERMISSIVE = 3  # codes below this permit every call without taking the lock
_MASK = 7


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """How a breaker decides. Rates are fractions 0..1; durations are seconds.

    `window="count"` keeps the last `window_size` calls, `"time"` the last
    `window_size` seconds. Rates are judged once `minimum_calls` are in the window.
    `consecutive_failures=N` also trips after N failures in a row (the simple mode).
    Exceptions that are instances of `ignore_exceptions` count as nothing, those of
    `record_exceptions` as failures, any other as success; `failure_predicate(result)`
    marks returned values as failures (an HTTP 503 that did not raise).
    `max_wait_in_half_open=S` sends a half-open breaker back to OPEN (a new trip, so the
    wait backs off) when its trial calls have not all finished S seconds after it went
    half-open; None waits for them however long they take.
    """

    failure_rate_threshold: float = 0.5
    slow_call_rate_threshold: float = 1.0
    slow_call_duration: float = 60.0
    window: Literal["count", "time"] = "count"
    window_size: int = 100
    minimum_calls: int = 10
    consecutive_failures: int | None = None
    wait_duration: float = 60.0
    wait_multiplier: float = 1.0
    max_wait_duration: float | None = None
    half_open_calls: int = 10
    max_wait_in_half_open: float | None = None
    record_exceptions: tuple[type[BaseException], ...] = (Exception,)
    ignore_exceptions: tuple[type[BaseException], ...] = ()
    failure_predicate: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a fraction in (0, 1]")
        if self.half_open_calls < 1 or self.minimum_calls < 1:
            raise ValueError("half_open_calls and minimum_calls must be at least 1")
        if self.max_wait_in_half_open is not None and not self.max_wait_in_half_open > 0:
            raise ValueError("max_wait_in_half_open must be positive (or None)")
        if self.window not in ("count", "time"):
            raise ValueError("window must be 'count' or 'time'")

    def wait_for(self, trips: int) -> float:
        """How long to stay open after the `trips`-th trip in a row."""
        wait = self.wait_duration * self.wait_multiplier ** max(0, trips - 1)
        return min(wait, self.max_wait_duration) if self.max_wait_duration else wait


@dataclass(frozen=True, slots=True)
class BreakerMetrics:
    """A snapshot of one breaker for /diagnostics and Prometheus."""

    name: str
    state: str
    failure_rate: float | None   # None until `minimum_calls` are buffered
    slow_call_rate: float | None
    buffered_calls: int
    failed_calls: int
    slow_calls: int
    not_permitted_calls: int
    retry_after: float | None    # seconds until half-open, while open
    consecutive_trips: int
    failure_rate_threshold: float
    slow_call_rate_threshold: float
    transitions: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__} | {
            "transitions": list(self.transitions)}


@dataclass(frozen=True, slots=True)
class Rejected:
    """What `try_call` returns instead of raising when the breaker refuses."""

    name: str
    retry_after: float | None
