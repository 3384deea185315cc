"""An event store on SQLite (default, WAL) or PostgreSQL, with projections, lag,
rebuild and integrity scans (import-light: drivers load when a store opens).

    from stackmedic.eventstore import NO_STREAM, NewEvent, open_store
    store = open_store("sqlite:///events.db")
    store.append("order-1", [NewEvent("placed", {"qty": 2})], expected=NO_STREAM)

See docs/eventstore.md. `diagnostics(store)` returns a JSON-able snapshot for a
`/diagnostics` endpoint.
"""

from typing import Any

from stackmedic.eventstore._base import EventStore, open_store
from stackmedic.eventstore._model import (
    ANY,
    NO_STREAM,
    AppendBatch,
    AppendResult,
    Checkpoint,
    ConcurrencyError,
    Conflict,
    DuplicateEventError,
    EventStoreError,
    NewEvent,
    ProjectionError,
    RebuildError,
    RecordedEvent,
    Tx,
    category_of,
)

__all__ = [
    "ANY",
    "NO_STREAM",
    "AppendBatch",
    "AppendResult",
    "Checkpoint",
    "ConcurrencyError",
    "Conflict",
    "DuplicateEventError",
    "EventStore",
    "EventStoreError",
    "NewEvent",
    "ProjectionError",
    "RebuildError",
    "RecordedEvent",
    "Tx",
    "category_of",
    "diagnostics",
    "open_store",
]


def diagnostics(store: EventStore) -> dict[str, Any]:
    """Counters, append latency percentiles, hot streams and checkpoints of `store`."""
    snapshot = store.diagnostics()
    snapshot["head"] = store.head()
    snapshot["checkpoints"] = {c.name: c.position for c in store.checkpoints()[:20]}
    return snapshot
