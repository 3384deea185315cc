"""The command executor retries on conflict and re-decides with fresh history."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from stackmedic.eventstore import ConcurrencyError, NewEvent, RecordedEvent, open_store
from stackmedic.eventstore.commands import execute


def test_concurrent_commands_all_succeed_with_retries(dsn: str) -> None:
    """Threads incrementing one stream all land, each deciding on the latest version."""
    open_store(dsn).close()
    phases: list[str] = []

    def increment(history: list[RecordedEvent]) -> Sequence[NewEvent]:
        return [NewEvent("incremented", {"to": len(history) + 1})]

    def worker(seed: int) -> None:
        with open_store(dsn) as store:
            for _ in range(5):
                execute(store, "counter-1", increment, attempts=50, base_delay=0.001,
                        on_phase=lambda phase, attrs: phases.append(phase),
                        rng=random.Random(seed))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with open_store(dsn) as store:
        events = store.read_stream("counter-1")
    assert [e.data["to"] for e in events] == list(range(1, 21))
    assert phases.count("append") == 20


def test_executor_gives_up_after_its_attempts(dsn: str) -> None:
    """A stream that always moves underneath re-raises ConcurrencyError after `attempts`."""
    phases: list[tuple[str, dict[str, Any]]] = []
    with open_store(dsn) as store, open_store(dsn) as rival:
        def decide(history: list[RecordedEvent]) -> Sequence[NewEvent]:
            rival.append("hot-1", [NewEvent("rival")])  # someone always gets there first
            return [NewEvent("mine")]

        with pytest.raises(ConcurrencyError, match="hot-1"):
            execute(store, "hot-1", decide, attempts=3, base_delay=0.001,
                    on_phase=lambda p, a: phases.append((p, a)))
    assert [p for p, _ in phases].count("conflict") == 3
    assert [p for p, _ in phases].count("backoff") == 2
    assert all(a["seconds"] <= 0.002 for p, a in phases if p == "backoff")


def test_a_command_is_traced_in_phases_with_the_library_tracer(dsn: str) -> None:
    """With `tracer=`, a command that hit a conflict is one trace whose phases show the
    failed attempt, the backoff and the retry; a command that gives up is an error."""
    from stackmedic.observe import Tracer

    tracer = Tracer()
    with open_store(dsn) as store, open_store(dsn) as rival:
        def racing(history: list[RecordedEvent]) -> Sequence[NewEvent]:
            if not history:  # another writer lands between our load and our append
                rival.append("order-1", [NewEvent("placed")])
            return [NewEvent("paid")]

        execute(store, "order-1", racing, base_delay=0.0, tracer=tracer, name="Pay")
        [trace] = tracer.recent(1)
        assert (trace["name"], trace["status"]) == ("Pay", "ok")
        assert trace["attributes"] == {"stream": "order-1", "attempts": 2}
        assert [p["name"] for p in trace["phases"]] == [
            "load", "decide", "append", "backoff", "load", "decide", "append"]

        def always_conflicts(history: list[RecordedEvent]) -> Sequence[NewEvent]:
            rival.append("order-1", [NewEvent("noise")])
            return [NewEvent("paid")]

        with pytest.raises(ConcurrencyError):
            execute(store, "order-1", always_conflicts, attempts=2, base_delay=0.0,
                    tracer=tracer, name="Pay")
        [failed] = tracer.recent(1)
        assert failed["status"] == "error" and "ConcurrencyError" in failed["error"]
