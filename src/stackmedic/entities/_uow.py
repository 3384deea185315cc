"""`UnitOfWork`: save entities and publish their events in one step.

    with UnitOfWork(bus, save=repository.save) as uow:
        order = uow.add(Order("o-1", qty=2))
        order.touch("paid")
    # saved, then its events pulled and published; nothing is left pending

The guide's failure: events recorded on entities that were saved but never
published, piling up in memory. Here publishing is not a separate step anyone can
forget. On an exception the entities' events are discarded (their changes were not
saved either) and the error propagates.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from stackmedic.entities._entity import TimestampedEntity
from stackmedic.entities._events import EventBus, trace

__all__ = ["UnitOfWork"]

E = TypeVar("E", bound=TimestampedEntity)


class UnitOfWork:
    """Tracks entities; `commit()` saves each (if `save` is given) and publishes all
    their pending events in order. Also a context manager that commits on success."""

    def __init__(self, bus: EventBus, save: Callable[[Any], object] | None = None) -> None:
        self.bus = bus
        self.save = save
        self._entities: dict[int, TimestampedEntity] = {}

    def add(self, entity: E) -> E:
        self._entities[id(entity)] = entity
        return entity

    def commit(self) -> int:
        """Save and publish; returns how many events were published."""
        entities = list(self._entities.values())
        if self.save is not None:
            for entity in entities:
                self.save(entity)
        events = [event for entity in entities for event in entity.pull_events()]
        self._entities.clear()
        self.bus.publish_all(events)
        return len(events)

    def rollback(self) -> None:
        """Forget the tracked entities' pending events (their changes were not saved)."""
        for entity in self._entities.values():
            for event in entity.pull_events():
                trace("discarded", event, entity._label())
        self._entities.clear()

    def __enter__(self) -> UnitOfWork:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()
