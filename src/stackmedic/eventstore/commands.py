"""Run a command against a stream with optimistic concurrency and retries.

    def place(history: list[RecordedEvent]) -> list[NewEvent]:
        if any(e.type == "placed" for e in history):
            raise ValueError("already placed")
        return [NewEvent("placed", {"qty": 2})]

    execute(store, "order-1", place)

Each attempt loads the stream, decides, and appends with the version it loaded; a
ConcurrencyError (another writer got there first) waits with exponential backoff
and full jitter, then re-loads and re-decides, up to `attempts` times. Every phase
(load, decide, append, conflict, backoff) is reported to `on_phase`; pass the
library's tracer (`stackmedic.observe.Tracer`) as `tracer=` and each command becomes
one trace with those phases timed, its attempts and its error, if any:

    execute(store, "order-1", place, tracer=tracer)    # tracer.recent() shows it
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from stackmedic.eventstore._base import EventStore
from stackmedic.eventstore._model import AppendResult, ConcurrencyError, NewEvent, RecordedEvent

if TYPE_CHECKING:
    from stackmedic.observe import Tracer

__all__ = ["PhaseHook", "execute"]

PhaseHook = Callable[[str, dict[str, Any]], None]


def execute(store: EventStore, stream: str,
            decide: Callable[[list[RecordedEvent]], Sequence[NewEvent]], *,
            attempts: int = 5, base_delay: float = 0.01, max_delay: float = 1.0,
            on_phase: PhaseHook | None = None, tracer: Tracer | None = None,
            name: str = "command",
            rng: random.Random | None = None) -> AppendResult | None:
    """Load, decide, append; retry on conflict. None when `decide` returns no events.
    Re-raises the last ConcurrencyError after `attempts` tries. With `tracer`, the
    command is traced as `name` with `stream` and `attempts` attributes."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    if tracer is None:
        return _execute(store, stream, decide, attempts, base_delay, max_delay, on_phase,
                        rng, None)
    with tracer.trace(name, stream=stream) as span:
        return _execute(store, stream, decide, attempts, base_delay, max_delay, on_phase,
                        rng, span)


def _execute(store: EventStore, stream: str,
             decide: Callable[[list[RecordedEvent]], Sequence[NewEvent]], attempts: int,
             base_delay: float, max_delay: float, on_phase: PhaseHook | None,
             rng: random.Random | None, span: Any) -> AppendResult | None:
    trace = on_phase or (lambda phase, attrs: None)
    jitter = rng or random.Random()

    @contextmanager
    def timed(phase: str) -> Iterator[None]:
        with span.phase(phase) if span is not None else nullcontext():
            yield

    for attempt in range(1, attempts + 1):
        if span is not None:
            span.attributes["attempts"] = attempt
        started = time.perf_counter()
        with timed("load"):
            history = store.read_stream(stream)
        version = history[-1].version if history else 0
        trace("load", {"stream": stream, "version": version, "attempt": attempt,
                       "seconds": time.perf_counter() - started})
        started = time.perf_counter()
        with timed("decide"):
            events = list(decide(history))
        trace("decide", {"stream": stream, "events": len(events),
                         "seconds": time.perf_counter() - started})
        if not events:
            return None
        started = time.perf_counter()
        try:
            with timed("append"):
                result = store.append(stream, events, expected=version)
        except ConcurrencyError as err:
            trace("conflict", {"stream": stream, "attempt": attempt, "error": str(err)})
            if attempt == attempts:
                raise
            delay = jitter.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
            trace("backoff", {"stream": stream, "attempt": attempt, "seconds": delay})
            with timed("backoff"):
                time.sleep(delay)
            continue
        trace("append", {"stream": stream, "position": result.last_position,
                         "seconds": time.perf_counter() - started})
        return result
    raise AssertionError("unreachable: the loop returns or raises")
