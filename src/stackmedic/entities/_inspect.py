"""Read-only views of entities: `inspect(entity)` and process-wide `diagnostics()`."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from stackmedic.entities._entity import TimestampedEntity, pending_entities
from stackmedic.entities._events import event_name
from stackmedic.entities._time import utcnow, zone_name

__all__ = ["diagnostics", "inspect"]

_SAMPLES = 10


def inspect(entity: TimestampedEntity, now: datetime | None = None) -> dict[str, Any]:
    """Identity, timestamps and their zones, age, staleness, validation, pending events
    (JSON-able; event names capped at 10)."""
    now = now or utcnow()
    violations = entity.violations()
    pending = entity.pending_events
    return {
        "type": f"{type(entity).__module__}.{type(entity).__qualname__}",
        "id": str(entity.entity_id()),
        "created_at": entity.created_at.isoformat(),
        "created_at_zone": zone_name(entity.created_at),
        "updated_at": entity.updated_at.isoformat(),
        "updated_at_zone": zone_name(entity.updated_at),
        "age_s": entity.age(now).total_seconds(),
        "staleness_s": entity.staleness(now).total_seconds(),
        "valid": not violations,
        "violations": [{"rule": v.rule, "message": v.message} for v in violations[:_SAMPLES]],
        "pending_events": len(pending),
        "pending_event_names": [event_name(e) for e in pending[:_SAMPLES]],
    }


def diagnostics() -> dict[str, Any]:
    """Live counts of undispatched domain events in this process, for `/diagnostics`:
    totals, per entity class, and the 10 entities holding the most."""
    holders = [(e, len(e.pending_events)) for e in pending_entities()]
    by_class: Counter[str] = Counter()
    for entity, count in holders:
        by_class[type(entity).__qualname__] += count
    holders.sort(key=lambda pair: pair[1], reverse=True)
    return {
        "undispatched_events": sum(by_class.values()),
        "entities_with_pending_events": len(holders),
        "by_class": dict(by_class.most_common(_SAMPLES)),
        "top": [{"entity": e._label(), "pending": n,
                 "over_bound": n > type(e).pending_events_warning}
                for e, n in holders[:_SAMPLES]],
    }
