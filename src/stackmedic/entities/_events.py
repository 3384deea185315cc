"""Domain events: the event value, an in-process bus, and a tracer for tests.

An entity buffers the events it records until someone pulls them; the bus hands
pulled events to handlers (plain functions or coroutines). The tracer records every
step of that flow (recorded → pulled → published → handled) so a test or a debugging
session can see where an event stopped.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from stackmedic.entities._time import utcnow

__all__ = ["DomainEvent", "EventBus", "EventTrace", "Handler", "trace_events"]

Handler: TypeAlias = Callable[[Any], "Awaitable[None] | None"]


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Something that happened to one entity; `data` should be JSON-able."""

    name: str
    entity_type: str
    entity_id: str
    data: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: datetime = field(default_factory=utcnow)


def event_name(event: object) -> str:
    return event.name if isinstance(event, DomainEvent) else type(event).__name__


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One step of an event's flow, as recorded by `trace_events()`."""

    stage: str  # recorded | pulled | published | handled | failed | discarded
    event: str
    entity: str
    detail: str = ""


class EventTrace:
    """The steps seen while a `trace_events()` block was active."""

    def __init__(self) -> None:
        self.steps: list[TraceStep] = []

    def stages(self, event: str | None = None) -> list[str]:
        """The stages in order, optionally of events with one name."""
        return [s.stage for s in self.steps if event is None or s.event == event]


_TRACES: list[EventTrace] = []


def trace(stage: str, event: object, entity: str = "", detail: str = "") -> None:
    """Record a step in every active trace (cheap no-op when none is active)."""
    if _TRACES:
        step = TraceStep(stage, event_name(event), entity, detail)
        for active in _TRACES:
            active.steps.append(step)


@contextmanager
def trace_events() -> Iterator[EventTrace]:
    """Record the event flow inside the block: `with trace_events() as t: ...`."""
    current = EventTrace()
    _TRACES.append(current)
    try:
        yield current
    finally:
        _TRACES.remove(current)


class EventBus:
    """In-process publish/subscribe. Subscribe by event class, by event name, or "*".

    `publish` runs sync handlers in order and async ones to completion (with
    `asyncio.run` when no loop is running; inside a loop use `apublish`). A failing
    handler does not stop the others: every failure is raised together at the end as
    an ExceptionGroup, so one broken subscriber cannot silently swallow the rest.
    """

    def __init__(self) -> None:
        self._handlers: list[tuple[type | str, Handler]] = []
        self.published = 0

    def subscribe(self, selector: type | str, handler: Handler) -> Handler:
        self._handlers.append((selector, handler))
        return handler

    def handlers_for(self, event: object) -> list[Handler]:
        name = event_name(event)
        return [h for sel, h in self._handlers
                if sel == "*" or sel == name or (isinstance(sel, type) and isinstance(event, sel))]

    def publish(self, *events: object) -> None:
        """Deliver `events` in order to their handlers; coroutine handlers are run to
        completion with `asyncio.run` (inside a running loop, use `apublish`)."""
        errors: list[Exception] = []
        for event in events:
            for handler, result in self._start(event):
                if inspect.isawaitable(result):
                    result = _run_sync(result)
                self._finish(event, handler, result, errors)
        _raise_all(errors)

    def publish_all(self, events: Iterable[object]) -> None:
        """Batch form of `publish`."""
        self.publish(*events)

    async def apublish(self, *events: object) -> None:
        """Like `publish`, awaiting coroutine handlers on the running loop."""
        errors: list[Exception] = []
        for event in events:
            for handler, result in self._start(event):
                if inspect.isawaitable(result):
                    try:
                        result = await result
                    except Exception as err:  # collected: every handler gets its event
                        result = err
                self._finish(event, handler, result, errors)
        _raise_all(errors)

    def _start(self, event: object) -> Iterator[tuple[Handler, object]]:
        trace("published", event)
        self.published += 1
        for handler in self.handlers_for(event):
            try:
                yield handler, handler(event)
            except Exception as err:  # collected: every handler gets its event
                yield handler, err

    @staticmethod
    def _finish(event: object, handler: Handler, result: object,
                errors: list[Exception]) -> None:
        if isinstance(result, Exception):
            trace("failed", event, detail=repr(result))
            errors.append(result)
        else:
            trace("handled", event, detail=getattr(handler, "__qualname__", ""))


def _run_sync(awaitable: Awaitable[Any]) -> object:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("EventBus.publish met a coroutine handler inside a running "
                           "event loop; use `await bus.apublish(...)`")

    async def run() -> object:
        try:
            return await awaitable
        except Exception as err:  # collected like a sync handler's failure
            return err

    return asyncio.run(run())


def _raise_all(errors: list[Exception]) -> None:
    if errors:
        raise ExceptionGroup(f"{len(errors)} event handler(s) failed", errors)
