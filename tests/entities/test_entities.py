"""TimestampedEntity, domain events, EventBus, UnitOfWork and inspect()."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest

import stackmedic.entities as entities
from stackmedic.entities import (
    EntityValidationError,
    EventBufferFull,
    EventBus,
    NaiveDatetimeError,
    PendingEventsWarning,
    TimestampedEntity,
    UnitOfWork,
    Violation,
    diagnostics,
    inspect,
    trace_events,
)


@dataclass(eq=False)
class Order(TimestampedEntity):
    id: str
    qty: int = 1
    customer: str = "c"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def entity_id(self) -> str:
        return self.id

    def validate(self) -> Iterator[Violation]:
        if self.qty < 0:
            yield Violation("qty.non_negative", f"qty is {self.qty}")
        if not self.customer:
            yield Violation("customer.required", "customer is empty")


class StrictOrder(Order):
    strict_timestamps = True


def test_all_is_sorted_and_exported() -> None:
    """The public surface is the sorted __all__ (constants, classes, functions: isort
    style, as ruff keeps it) and every name in it exists."""
    def style(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert entities.__all__ == sorted(entities.__all__, key=style)
    assert all(hasattr(entities, name) for name in entities.__all__)


def test_import_is_light() -> None:
    """Importing stackmedic.entities loads neither pydantic, httpx nor psycopg."""
    code = ("import sys, stackmedic.entities; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'pydantic', 'httpx', 'psycopg', 'yaml'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_missing_hooks_fail_at_class_definition() -> None:
    """A subclass without entity_id()/validate() raises TypeError naming class and hooks."""
    with pytest.raises(TypeError) as info:
        class Incomplete(TimestampedEntity):
            def entity_id(self) -> str:
                return "x"
    message = str(info.value)
    assert "Incomplete" in message and "validate()" in message
    assert "entity_id()" not in message and "entity.contract.incomplete" in message


def test_abstract_intermediate_base_is_allowed() -> None:
    """abstract=True defers the contract check to concrete subclasses."""
    class Base(TimestampedEntity, abstract=True):
        pass

    with pytest.raises(TypeError, match="entity_id"):
        class Concrete(Base):
            def validate(self) -> Iterator[Violation]:
                return iter(())


def test_naive_timestamps_are_taken_as_utc() -> None:
    """A naive created_at is coerced to aware UTC with the same wall-clock value."""
    order = Order("o1", created_at=datetime(2024, 1, 2, 3, 4, 5))
    assert order.created_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert order.created_at.tzinfo is UTC


def test_other_zones_are_converted_to_utc() -> None:
    """An aware non-UTC value becomes the same instant in UTC."""
    plus2 = timezone(timedelta(hours=2))
    order = Order("o1", created_at=datetime(2024, 1, 2, 12, 0, tzinfo=plus2))
    assert order.created_at == datetime(2024, 1, 2, 10, 0, tzinfo=UTC)
    assert order.created_at.utcoffset() == timedelta(0)


def test_strict_mode_rejects_naive_input() -> None:
    """strict_timestamps=True raises NaiveDatetimeError for a naive value."""
    with pytest.raises(NaiveDatetimeError, match="naive"):
        StrictOrder("o1", created_at=datetime(2024, 1, 1))


def test_created_at_is_immutable_once_set() -> None:
    """Assigning created_at a second time raises AttributeError."""
    order = Order("o1")
    with pytest.raises(AttributeError, match="immutable"):
        order.created_at = datetime.now(UTC)


def test_a_copy_has_its_own_timestamps_and_events() -> None:
    """copy.copy() of an entity does not share its timestamps or event buffer: touching
    the copy leaves the original unchanged, and both stay independently immutable."""
    import copy

    original = Order("o-1")
    original.record("placed")
    clone = copy.copy(original)
    clone.touch("paid", at=original.updated_at + timedelta(hours=1))
    assert original.updated_at < clone.updated_at
    assert [getattr(e, "name", "") for e in original.pending_events] == ["placed"]
    assert [getattr(e, "name", "") for e in clone.pending_events] == ["placed", "touched"]
    assert clone.created_at == original.created_at and clone.id == "o-1"
    with pytest.raises(AttributeError):
        clone.created_at = datetime.now(UTC)


def test_updated_at_cannot_precede_created_at() -> None:
    """Setting updated_at before created_at raises ValueError naming the rule."""
    order = Order("o1", created_at=datetime(2024, 1, 2, tzinfo=UTC))
    assert order.updated_at >= order.created_at
    with pytest.raises(ValueError, match=r"entity\.timestamps\.order"):
        order.updated_at = datetime(2024, 1, 1, tzinfo=UTC)


def test_touch_updates_timestamp_and_records_event() -> None:
    """touch() moves updated_at forward and records a 'touched' event with the reason."""
    order = Order("o1", created_at=datetime(2024, 1, 1, tzinfo=UTC))
    order.pull_events()
    order.touch("paid", at=datetime(2024, 1, 3, tzinfo=UTC))
    assert order.updated_at == datetime(2024, 1, 3, tzinfo=UTC)
    [event] = order.pull_events()
    assert isinstance(event, entities.DomainEvent)
    assert (event.name, event.entity_id, dict(event.data)) == ("touched", "o1",
                                                               {"reason": "paid"})


def test_age_and_staleness() -> None:
    """age() counts from created_at and staleness() from updated_at."""
    order = Order("o1", created_at=datetime(2024, 1, 1, tzinfo=UTC))
    order.touch("x", at=datetime(2024, 1, 2, tzinfo=UTC))
    now = datetime(2024, 1, 4, tzinfo=UTC)
    assert order.age(now) == timedelta(days=3)
    assert order.staleness(now) == timedelta(days=2)


def test_validation_reports_every_broken_rule() -> None:
    """ensure_valid() raises listing all broken rules, not just the first."""
    order = Order("o1", qty=-2, customer="")
    with pytest.raises(EntityValidationError) as info:
        order.ensure_valid()
    assert [v.rule for v in info.value.violations] == ["qty.non_negative", "customer.required"]
    assert Order("o2").is_valid()


def test_a_crashing_validator_is_a_violation() -> None:
    """A validate() that raises is reported as the 'validate.raised' rule, not a crash."""
    order = Order("o1", qty=None)  # type: ignore[arg-type]
    assert [v.rule for v in order.violations()] == ["validate.raised"]


def test_event_bound_warns_once_and_limit_raises() -> None:
    """Past pending_events_warning a PendingEventsWarning is issued; the limit raises."""
    class Small(Order):
        pending_events_warning = 2
        pending_events_limit = 4

    order = Small("o1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(4):
            order.record("changed")
    assert [w.category for w in caught] == [PendingEventsWarning]
    assert "entity.events.accumulating" in str(caught[0].message)
    with pytest.raises(EventBufferFull):
        order.record("changed")
    assert len(order.pull_events()) == 4
    assert order.pending_events == ()


def test_diagnostics_counts_undispatched_events_live() -> None:
    """diagnostics() counts pending events per class and forgets pulled ones."""
    order = Order("diag-1")
    order.record("a")
    order.record("b")
    snapshot = diagnostics()
    assert {"entity": "Order(diag-1)", "pending": 2, "over_bound": False} in snapshot["top"]
    order.pull_events()
    assert all(t["entity"] != "Order(diag-1)" for t in diagnostics()["top"])


def test_bus_delivers_to_sync_and_async_handlers_by_name_type_and_star() -> None:
    """publish() reaches sync and async handlers subscribed by name, class or '*'."""
    bus, seen = EventBus(), []

    async def async_handler(event: object) -> None:
        seen.append(("async", event.name))  # type: ignore[attr-defined]

    bus.subscribe("placed", lambda e: seen.append(("name", e.name)))
    bus.subscribe(entities.DomainEvent, async_handler)
    bus.subscribe("*", lambda e: seen.append(("star", e.name)))
    order = Order("o1")
    order.record("placed")
    order.record("other")
    bus.publish_all(order.pull_events())
    assert seen == [("name", "placed"), ("async", "placed"), ("star", "placed"),
                    ("async", "other"), ("star", "other")]


def test_bus_runs_every_handler_and_raises_failures_together() -> None:
    """A failing handler does not stop the others; failures come back as a group."""
    bus, seen = EventBus(), []

    def broken(event: object) -> None:
        raise RuntimeError("boom")

    bus.subscribe("*", broken)
    bus.subscribe("*", seen.append)
    with pytest.raises(ExceptionGroup) as info:
        bus.publish(entities.DomainEvent("x", "T", "1"))
    assert len(seen) == 1 and isinstance(info.value.exceptions[0], RuntimeError)


def test_unit_of_work_saves_publishes_and_clears() -> None:
    """On success the unit of work saves, publishes every event and leaves none pending."""
    bus, saved, published = EventBus(), [], []
    bus.subscribe("*", published.append)
    with trace_events() as trace, UnitOfWork(bus, save=saved.append) as uow:
        order = uow.add(Order("o1"))
        order.touch("paid")
    assert saved == [order] and order.pending_events == ()
    assert [e.name for e in published] == ["touched"]
    assert trace.stages("touched") == ["recorded", "pulled", "published", "handled"]


def test_unit_of_work_discards_events_on_error() -> None:
    """On an exception nothing is published and the entities' events are discarded."""
    bus, published = EventBus(), []
    bus.subscribe("*", published.append)
    order = Order("o1")
    with pytest.raises(KeyError), UnitOfWork(bus) as uow:
        uow.add(order).touch("x")
        raise KeyError("fail")
    assert published == [] and order.pending_events == ()


def test_inspect_reports_identity_zones_validation_and_events() -> None:
    """inspect() gives id, UTC zones, age, staleness, validation status and events."""
    order = Order("o9", qty=-1, created_at=datetime(2024, 1, 1, tzinfo=UTC))
    order.record("placed")
    view = inspect(order, now=datetime(2024, 1, 2, tzinfo=UTC))
    assert view["id"] == "o9" and view["created_at_zone"] == "UTC"
    assert view["age_s"] == 86400.0 and view["valid"] is False
    assert view["violations"][0]["rule"] == "qty.non_negative"
    assert view["pending_events"] == 1 and view["pending_event_names"] == ["placed"]
