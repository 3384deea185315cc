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


def test_opentelemetry_spans_are_exported_with_phases_as_children_and_errors() -> None:
    """Through a real SDK provider: one span per trace and phase, phases parented by
    their trace, attributes kept, and a trace that raises is an error span with the
    exception recorded."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = Tracer(otel=True, tracer_provider=provider)
    with tracer.trace("PlaceOrder", order_id=42, customer=object()) as trace:
        with trace.phase("validate"):
            pass
        with trace.phase("append_events"):
            pass
    with pytest.raises(ValueError), tracer.trace("Refund") as trace, trace.phase("load"):
        raise ValueError("no such order")

    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"PlaceOrder", "validate", "append_events", "Refund", "load"}
    order = spans["PlaceOrder"]
    assert order.attributes is not None and order.attributes["order_id"] == 42
    assert isinstance(order.attributes["customer"], str)  # made exportable
    for phase in ("validate", "append_events"):
        parent = spans[phase].parent
        assert parent is not None and parent.span_id == order.context.span_id
    assert order.status.status_code is not StatusCode.ERROR
    refund = spans["Refund"]
    assert refund.status.status_code is StatusCode.ERROR
    assert [event.name for event in refund.events] == ["exception"]
    assert tracer.recent()[0]["error"] == "ValueError: no such order"
