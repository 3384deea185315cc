"""Run a command against a stream with optimistic concurrency and retries.

    def place(history: list[RecordedEvent]) -> list[NewEvent]:
        if any(e.type == "placed" for e in history):
            raise ValueError("already placed")
        return [NewEvent("placed", {"qty": 2})]

    execute(store, "order-1", place)

Each attempt loads the stream, decides, and appends with the version it loaded; a
ConcurrencyError (another writer got there first) waits with exponential backoff
and full jitter, then re-loads and re-decides, up to `attempts` times. Every phase
(load, decide, append, conflict, backoff) is reported to `on_phase` so a tracer can
time it (`stackmedic.observe`'s tracer, when present, fits this shape).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from stackmedic.eventstore._base import EventStore
from stackmedic.eventstore._model import AppendResult, ConcurrencyError, NewEvent, RecordedEvent

__all__ = ["PhaseHook", "execute"]

PhaseHook = Callable[[str, dict[str, Any]], None]


def execute(store: EventStore, stream: str,
            decide: Callable[[list[RecordedEvent]], Sequence[NewEvent]], *,
            attempts: int = 5, base_delay: float = 0.01, max_delay: float = 1.0,
            on_phase: PhaseHook | None = None,
            rng: random.Random | None = None) -> AppendResult | None:
    """Load, decide, append; retry on conflict. None when `decide` returns no events.
    Re-raises the last ConcurrencyError after `attempts` tries."""
    trace = on_phase or (lambda phase, attrs: None)
    jitter = rng or random.Random()
    for attempt in range(1, attempts + 1):
        started = time.perf_counter()
        history = store.read_stream(stream)
        version = history[-1].version if history else 0
        trace("load", {"stream": stream, "version": version, "attempt": attempt,
                       "seconds": time.perf_counter() - started})
        started = time.perf_counter()
        events = list(decide(history))
        trace("decide", {"stream": stream, "events": len(events),
                         "seconds": time.perf_counter() - started})
        if not events:
            return None
        started = time.perf_counter()
        try:
            result = store.append(stream, events, expected=version)
        except ConcurrencyError as err:
            trace("conflict", {"stream": stream, "attempt": attempt, "error": str(err)})
            if attempt == attempts:
                raise
            delay = jitter.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
            trace("backoff", {"stream": stream, "attempt": attempt, "seconds": delay})
            time.sleep(delay)
            continue
        trace("append", {"stream": stream, "position": result.last_position,
                         "seconds": time.perf_counter() - started})
        return result
    raise AssertionError("unreachable: the loop returns or raises")
