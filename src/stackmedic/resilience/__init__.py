"""Resilience primitives for services: breaker, retry, fallback, bulkhead, queue, limits.

    from stackmedic.resilience import BreakerConfig, CircuitBreaker

    payments = CircuitBreaker("payments", BreakerConfig(failure_rate_threshold=0.5))

    @payments
    def charge(order): ...

Everything here is sync and asyncio, thread-safe, typed, and exposes its state for
`stackmedic.observe` diagnostics. Importing it pulls in no third-party package.
"""

from stackmedic.resilience._breaker import CircuitBreaker
from stackmedic.resilience._breaker_config import (
    BreakerConfig,
    BreakerMetrics,
    Rejected,
    State,
)
from stackmedic.resilience._bulkhead import Bulkhead
from stackmedic.resilience._errors import (
    BulkheadFullError,
    CircuitOpenError,
    OperationTimeoutError,
    QueueFullError,
    RateLimitedError,
    ResilienceError,
)
from stackmedic.resilience._events import (
    BreakerEvent,
    BreakerListener,
    CallNotPermitted,
    FailureRateExceeded,
    SlowCallRateExceeded,
    StateTransition,
)
from stackmedic.resilience._fallback import DegradationManager, Fallback, Level
from stackmedic.resilience._pipeline import Pipeline, pipeline
from stackmedic.resilience._queue import RecentCounter, WorkQueue
from stackmedic.resilience._ratelimit import RateLimiter
from stackmedic.resilience._registry import BreakerRegistry
from stackmedic.resilience._retry import Retry, RetryBudget
from stackmedic.resilience._timeout import TimeLimiter, timeout

__all__ = [
    "BreakerConfig",
    "BreakerEvent",
    "BreakerListener",
    "BreakerMetrics",
    "BreakerRegistry",
    "Bulkhead",
    "BulkheadFullError",
    "CallNotPermitted",
    "CircuitBreaker",
    "CircuitOpenError",
    "DegradationManager",
    "FailureRateExceeded",
    "Fallback",
    "Level",
    "OperationTimeoutError",
    "Pipeline",
    "QueueFullError",
    "RateLimitedError",
    "RateLimiter",
    "RecentCounter",
    "Rejected",
    "ResilienceError",
    "Retry",
    "RetryBudget",
    "SlowCallRateExceeded",
    "State",
    "StateTransition",
    "TimeLimiter",
    "WorkQueue",
    "pipeline",
    "timeout",
]
