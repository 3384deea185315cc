"""Typed events a circuit breaker hands to its listeners.

Listeners run synchronously on the calling thread after the breaker's lock is
released, so a slow listener slows its caller but can never deadlock the breaker;
an exception in a listener is swallowed (a metrics hook must not break payments).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "BreakerEvent",
    "BreakerListener",
    "CallNotPermitted",
    "FailureRateExceeded",
    "SlowCallRateExceeded",
    "StateTransition",
]


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """Something that happened to breaker `name` at wall-clock time `at` (epoch seconds)."""

    name: str
    at: float


@dataclass(frozen=True, slots=True)
class StateTransition(BreakerEvent):
    """The breaker moved from one state to another (`"closed"` → `"open"`…)."""

    from_state: str
    to_state: str


@dataclass(frozen=True, slots=True)
class CallNotPermitted(BreakerEvent):
    """A call was rejected because the breaker is open or its trial calls are taken."""

    state: str


@dataclass(frozen=True, slots=True)
class FailureRateExceeded(BreakerEvent):
    """The failure rate over the window reached the threshold (this trips the breaker)."""

    rate: float
    threshold: float


@dataclass(frozen=True, slots=True)
class SlowCallRateExceeded(BreakerEvent):
    """The slow-call rate over the window reached the threshold (this trips the breaker)."""

    rate: float
    threshold: float


BreakerListener: TypeAlias = Callable[[BreakerEvent], object]
