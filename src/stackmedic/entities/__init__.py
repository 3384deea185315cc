"""Timestamped entities with domain events (import-light: standard library only).

    from stackmedic.entities import TimestampedEntity, Violation, EventBus, UnitOfWork

See docs/entities.md. `diagnostics()` returns live counts of undispatched events for
a `/diagnostics` endpoint; `stackmedic entities scan` checks stored rows.
"""

from stackmedic.entities._entity import (
    EntityValidationError,
    EventBufferFull,
    PendingEventsWarning,
    TimestampedEntity,
    Violation,
)
from stackmedic.entities._events import DomainEvent, EventBus, EventTrace, trace_events
from stackmedic.entities._inspect import diagnostics, inspect
from stackmedic.entities._time import NaiveDatetimeError, to_utc
from stackmedic.entities._uow import UnitOfWork

__all__ = [
    "DomainEvent",
    "EntityValidationError",
    "EventBufferFull",
    "EventBus",
    "EventTrace",
    "NaiveDatetimeError",
    "PendingEventsWarning",
    "TimestampedEntity",
    "UnitOfWork",
    "Violation",
    "diagnostics",
    "inspect",
    "to_utc",
    "trace_events",
]
