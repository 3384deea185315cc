"""Event store values and errors.

    EventStoreError (StackmedicError)
    ├── ConcurrencyError     expected versions did not match (.conflicts: stream, expected, actual)
    ├── DuplicateEventError  an event id was appended twice
    ├── ProjectionError      a projection failed at an event (.projection, .position)
    └── RebuildError         a rebuild failed and the backup was restored (.position)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from uuid import UUID

from stackmedic.errors import StackmedicError

__all__ = ["ANY", "NO_STREAM", "AppendBatch", "AppendResult", "Checkpoint",
           "ConcurrencyError", "Conflict", "DuplicateEventError", "EventStoreError", "NewEvent",
           "ProjectionError", "RebuildError", "RecordedEvent", "Tx", "category_of"]

ANY: Final = None
"""Expected version: append whatever the stream's version is."""
NO_STREAM: Final = 0
"""Expected version: the stream must not exist yet (versions start at 1)."""



def category_of(stream: str) -> str:
    """`order-42` → `order` (the part before the first dash, as Message DB does)."""
    return stream.split("-", 1)[0]


def new_event_id() -> str:
    """A random (version 4) UUID as text, about 4x cheaper than `str(uuid.uuid4())`,
    which matters on the append path (measured: 5.3 µs vs 1.3 µs per id)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append; `data` and `metadata` must be JSON-able. The id is fixed
    when the event is created, so a retried append of the same event is detected."""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    event_id: str | UUID = field(default_factory=new_event_id)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def encoded(self) -> tuple[str, str, str]:
        """(data, metadata, occurred_at) as stored text; naive times are taken as UTC."""
        return (_dumps(self.data), _dumps(self.metadata) if self.metadata else "{}",
                utc_text(self.occurred_at))


_dumps = json.JSONEncoder(separators=(",", ":")).encode


def utc_text(when: datetime) -> str:
    """Fixed-width ISO 8601 in UTC (`2024-01-02T03:04:05.000006+00:00`): text order is
    time order, and it is several times cheaper than strftime on the append path."""
    if when.tzinfo is not UTC:
        when = when.replace(tzinfo=UTC) if when.utcoffset() is None else when.astimezone(UTC)
    return when.isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored: global position, stream version and the decoded payload."""

    position: int
    stream: str
    version: int
    event_id: str
    type: str
    data: Any
    metadata: Any
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class AppendBatch:
    """Events for one stream and the version the stream must be at (ANY, NO_STREAM, n)."""

    stream: str
    events: Sequence[NewEvent]
    expected: int | None = ANY


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an append landed: its last global position and each stream's new version."""

    first_position: int
    last_position: int
    versions: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    name: str
    position: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Conflict:
    stream: str
    expected: int
    actual: int


class Tx(Protocol):
    """A transaction handle given to projections: `?` is the parameter placeholder."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...


class EventStoreError(StackmedicError):
    """Base of the event store's errors."""


class ConcurrencyError(EventStoreError):
    """Another writer moved a stream first; `.conflicts` names every stream involved."""

    def __init__(self, conflicts: Sequence[Conflict]) -> None:
        self.conflicts = list(conflicts)
        detail = ", ".join(f"{c.stream} expected version {c.expected}, actual {c.actual}"
                           for c in self.conflicts)
        super().__init__(f"concurrency conflict: {detail}")

    @property
    def streams(self) -> list[str]:
        return [c.stream for c in self.conflicts]


class DuplicateEventError(EventStoreError):
    """An event id that is already stored was appended again."""


class ProjectionError(EventStoreError):
    """A projection raised while applying an event."""

    def __init__(self, projection: str, position: int, error: BaseException) -> None:
        self.projection = projection
        self.position = position
        self.error = error
        super().__init__(f"projection {projection!r} failed at position {position}: "
                         f"{type(error).__name__}: {error}")


class RebuildError(EventStoreError):
    """A rebuild failed; the projection's backup was restored."""

    def __init__(self, projection: str, position: int, error: BaseException) -> None:
        self.projection = projection
        self.position = position
        super().__init__(f"rebuild of {projection!r} failed at position {position} "
                         f"({type(error).__name__}: {error}); previous state restored")
