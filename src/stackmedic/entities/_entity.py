"""`TimestampedEntity`: UTC timestamps, a contract checked at class definition, full
validation reports and a bounded buffer of domain events.

    @dataclass
    class Order(TimestampedEntity):
        id: str
        qty: int

        def entity_id(self) -> str:
            return self.id

        def validate(self) -> Iterator[Violation]:
            if self.qty < 0:
                yield Violation("qty.non_negative", f"qty is {self.qty}")

The guides' failures this prevents: a subclass missing a hook failed with
`NotImplementedError` at first use in production (here: `TypeError` at import);
naive datetimes mixed with aware ones (here: coerced to UTC, or rejected in strict
mode); validation that stopped at the first error; events piling up in memory
because nobody pulled them (here: a warning past a bound, an error at a hard limit,
and live counts for `/diagnostics`).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from stackmedic.entities._events import DomainEvent, trace
from stackmedic.entities._time import to_utc, utcnow

__all__ = ["EntityValidationError", "EventBufferFull", "PendingEventsWarning",
           "TimestampedEntity", "Violation"]

REQUIRED_HOOKS = ("entity_id", "validate")


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken validation rule: a stable rule name and a human message."""

    rule: str
    message: str


class EntityValidationError(ValueError):
    """An entity broke one or more rules; `.violations` lists every one of them."""

    def __init__(self, entity: str, violations: list[Violation]) -> None:
        self.entity = entity
        self.violations = violations
        rules = "; ".join(f"{v.rule}: {v.message}" for v in violations)
        super().__init__(f"{entity} is invalid ({len(violations)} rule(s)): {rules}")


class PendingEventsWarning(UserWarning):
    """An entity holds more undispatched events than its warning bound
    (`entity.events.accumulating`): something records events but never pulls them."""


class EventBufferFull(RuntimeError):
    """An entity reached its hard limit of pending events; pull and publish them."""


# Entities that hold undispatched events, for diagnostics(). Weak values: an entity
# that is garbage-collected leaves the registry (its events are gone with it).
_PENDING: weakref.WeakValueDictionary[int, TimestampedEntity] = weakref.WeakValueDictionary()


class _Timestamp:
    """Data descriptor for created_at/updated_at: UTC coercion, immutability, order."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: TimestampedEntity | None, owner: type) -> Any:
        if obj is None:
            return self
        return obj.__dict__["_sm_ts"][self.name][0]

    def __set__(self, obj: TimestampedEntity, value: datetime) -> None:
        stamps: dict[str, tuple[datetime, bool]] = obj.__dict__["_sm_ts"]
        value = to_utc(value, strict=type(obj).strict_timestamps,
                       field=f"{type(obj).__qualname__}.{self.name}")
        if self.name == "created_at":
            if stamps["created_at"][1]:
                raise AttributeError(f"{type(obj).__qualname__}.created_at is immutable "
                                     "once set")
            updated, explicit = stamps["updated_at"]
            if explicit and updated < value:
                raise ValueError(_order_message(obj, value, updated))
            stamps["created_at"] = (value, True)
            if not explicit:  # the provisional updated_at follows the real creation time
                stamps["updated_at"] = (max(value, updated), False)
        else:
            created, explicit = stamps["created_at"]
            if explicit and value < created:
                raise ValueError(_order_message(obj, created, value))
            stamps["updated_at"] = (value, True)


def _order_message(obj: object, created: datetime, updated: datetime) -> str:
    return (f"{type(obj).__qualname__}: updated_at {updated.isoformat()} is before "
            f"created_at {created.isoformat()} (entity.timestamps.order)")


class TimestampedEntity:
    """Base for entities with UTC `created_at`/`updated_at` and domain events.

    Subclasses must define `entity_id()` and `validate()` (checked when the class is
    defined; pass `abstract=True` in the class line for an intermediate base).
    Class settings: `strict_timestamps` (reject naive datetimes instead of taking them
    as UTC), `pending_events_warning` (warn above this many undispatched events,
    default 10) and `pending_events_limit` (raise EventBufferFull at this many).
    """

    strict_timestamps: ClassVar[bool] = False
    pending_events_warning: ClassVar[int] = 10
    pending_events_limit: ClassVar[int] = 1000

    created_at = _Timestamp("created_at")
    updated_at = _Timestamp("updated_at")

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        missing = [hook for hook in REQUIRED_HOOKS
                   if getattr(cls, hook) is getattr(TimestampedEntity, hook)]
        if missing:
            names = ", ".join(f"{hook}()" for hook in missing)
            raise TypeError(f"{cls.__module__}.{cls.__qualname__} must define {names} "
                            "(entity.contract.incomplete); pass abstract=True in the class "
                            "line if it is an intermediate base")

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        self = super().__new__(cls)
        now = utcnow()
        # Provisional stamps (explicit=False) so dataclass __init__ may set the real ones
        # once; after that created_at is frozen.
        self.__dict__["_sm_ts"] = {"created_at": (now, False), "updated_at": (now, False)}
        self.__dict__["_sm_events"] = []
        return self

    def __copy__(self) -> Any:
        """A shallow copy with its own timestamps and event buffer: touching or
        recording on the copy must not change the original (as `copy.copy` would by
        sharing the instance's internal dict and list)."""
        cls = type(self)
        new = cls.__new__(cls)
        new.__dict__.update({k: v for k, v in self.__dict__.items()
                             if k not in ("_sm_ts", "_sm_events")})
        new.__dict__["_sm_ts"] = dict(self.__dict__["_sm_ts"])
        new.__dict__["_sm_events"] = list(self.__dict__["_sm_events"])
        for name in getattr(cls, "__slots__", ()):  # dataclass(slots=True) fields
            if hasattr(self, name) and name != "__weakref__":
                object.__setattr__(new, name, getattr(self, name))
        if new.__dict__["_sm_events"]:
            _PENDING[id(new)] = new
        return new

    # --- hooks ----------------------------------------------------------------------

    def entity_id(self) -> str:
        """The identity of this entity (required hook)."""
        raise NotImplementedError  # unreachable: __init_subclass__ demands an override

    def validate(self) -> Iterable[Violation]:
        """Yield a Violation for every broken rule; do not stop at the first (required)."""
        raise NotImplementedError  # unreachable: __init_subclass__ demands an override

    # --- validation ------------------------------------------------------------------

    def violations(self) -> list[Violation]:
        """Every broken rule; a rule that raises counts as broken, named by its error."""
        found: list[Violation] = []
        try:
            for item in self.validate():
                found.append(item if isinstance(item, Violation) else Violation(*item))
        except Exception as err:  # a crashing validator is itself a broken rule
            found.append(Violation("validate.raised", f"{type(err).__name__}: {err}"))
        created, updated = self.created_at, self.updated_at
        if updated < created:
            found.append(Violation("timestamps.order", _order_message(self, created, updated)))
        return found

    def is_valid(self) -> bool:
        return not self.violations()

    def ensure_valid(self) -> None:
        """Raise EntityValidationError listing every broken rule, if any."""
        found = self.violations()
        if found:
            raise EntityValidationError(self._label(), found)

    # --- time ------------------------------------------------------------------------

    def touch(self, reason: str = "", *, at: datetime | None = None) -> None:
        """Mark the entity changed now (or `at`) and record a `touched` event."""
        self.updated_at = at or utcnow()
        self.record("touched", reason=reason)

    def age(self, now: datetime | None = None) -> timedelta:
        """Time since creation."""
        created: datetime = self.created_at
        return (now or utcnow()) - created

    def staleness(self, now: datetime | None = None) -> timedelta:
        """Time since the last update."""
        updated: datetime = self.updated_at
        return (now or utcnow()) - updated

    # --- domain events ---------------------------------------------------------------

    def record(self, event: object | str, **data: Any) -> object:
        """Buffer a domain event (an object, or a name plus data for a DomainEvent)."""
        if isinstance(event, str):
            event = DomainEvent(event, type(self).__qualname__, str(self.entity_id()), data)
        pending: list[object] = self.__dict__["_sm_events"]
        cls = type(self)
        if len(pending) >= cls.pending_events_limit:
            raise EventBufferFull(f"{self._label()} holds {len(pending)} undispatched events "
                                  "(limit reached); pull_events() and publish them")
        pending.append(event)
        _PENDING[id(self)] = self
        trace("recorded", event, self._label())
        if len(pending) == cls.pending_events_warning + 1:
            warnings.warn(f"{self._label()} holds {len(pending)} undispatched domain events "
                          f"(bound {cls.pending_events_warning}); pull_events() and publish "
                          "them, e.g. with UnitOfWork (entity.events.accumulating)",
                          PendingEventsWarning, stacklevel=2)
        return event

    @property
    def pending_events(self) -> tuple[object, ...]:
        return tuple(self.__dict__["_sm_events"])

    def pull_events(self) -> list[object]:
        """Return the buffered events and clear the buffer."""
        pending: list[object] = self.__dict__["_sm_events"]
        events, pending[:] = list(pending), []
        _PENDING.pop(id(self), None)
        for event in events:
            trace("pulled", event, self._label())
        return events

    def _label(self) -> str:
        try:
            return f"{type(self).__qualname__}({self.entity_id()})"
        except Exception:  # a broken entity_id must not hide the real error being reported
            return type(self).__qualname__


def pending_entities() -> Iterator[TimestampedEntity]:
    """Live entities holding undispatched events."""
    return iter(list(_PENDING.values()))
