"""The command tracer: phases, errors, a bounded ring, per-operation stats."""

from __future__ import annotations

import pytest

from stackmedic.observe import Tracer


def test_trace_records_phases_status_and_attributes_newest_first() -> None:
    """A trace keeps its phases in order, its attributes and ok/error status."""
    tracer = Tracer()
    with tracer.trace("PlaceOrder", order_id=42) as trace:
        with trace.phase("validate"):
            pass
        with trace.phase("append"):
            pass
    with pytest.raises(ValueError), tracer.trace("PlaceOrder", order_id=43):
        raise ValueError("version conflict")
    newest, oldest = tracer.recent()
    assert [p["name"] for p in oldest["phases"]] == ["validate", "append"]
    assert (oldest["status"], oldest["attributes"]) == ("ok", {"order_id": 42})
    assert newest["status"] == "error" and newest["error"] == "ValueError: version conflict"
    assert tracer.stats()["PlaceOrder"]["count"] == 2
    assert tracer.stats()["PlaceOrder"]["errors"] == 1


def test_ring_and_phases_are_bounded() -> None:
    """Only `capacity` traces and `max_phases` phases per trace are kept."""
    tracer = Tracer(capacity=5, max_phases=3)
    for i in range(20):
        with tracer.trace("op", i=i) as trace:
            for _ in range(10):
                with trace.phase("step"):
                    pass
    recent = tracer.recent(100)
    assert [t["attributes"]["i"] for t in recent] == [19, 18, 17, 16, 15]
    assert all(len(t["phases"]) == 3 for t in recent)
    assert tracer.stats()["op"]["count"] == 20


def test_opentelemetry_bridge_keeps_the_same_behaviour() -> None:
    """With otel=True (API installed) traces still record; spans go to the global provider."""
    pytest.importorskip("opentelemetry")
    tracer = Tracer(otel=True)
    with tracer.trace("cmd") as trace, trace.phase("p"):
        pass
    assert tracer.recent()[0]["phases"][0]["name"] == "p"
