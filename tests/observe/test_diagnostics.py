"""The diagnostics document, its Prometheus exposition and the ObserveApp routing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from stackmedic.observe import Diagnostics, LatencyTracker, ObserveApp, exposition
from stackmedic.resilience import (
    BreakerConfig,
    BreakerRegistry,
    Bulkhead,
    DegradationManager,
    QueueFullError,
    RateLimiter,
    Retry,
    RetryBudget,
    WorkQueue,
)
from tests.app.servers import serve


def make() -> tuple[Diagnostics, BreakerRegistry]:
    registry = BreakerRegistry({"fast": BreakerConfig(consecutive_failures=1)})
    with pytest.raises(ZeroDivisionError):
        registry.breaker("payments", "fast").call(lambda: 1 / 0)
    registry.breaker("search")
    tracker = LatencyTracker()
    tracker.record("checkout", 0.25)
    diagnostics = Diagnostics(service="shop")
    diagnostics.add_breakers(registry)
    diagnostics.add_latency(tracker)
    diagnostics.add_queue(WorkQueue("orders", lambda item: None, capacity=10))  # type: ignore[arg-type, return-value]
    diagnostics.add_retry(Retry("payments"))
    diagnostics.set_degradation(DegradationManager())
    diagnostics.add_pool("db", lambda: {"in_use": 3, "max": 10, "waiting": 0})
    diagnostics.register("events", lambda: {"projection_lag": 4})
    diagnostics.register("broken", lambda: 1 / 0)
    return diagnostics, registry


def test_snapshot_has_every_section_and_isolates_a_broken_source() -> None:
    """The document carries every registered source; one that raises shows as its error."""
    doc, _ = make()
    snap = doc.snapshot()
    assert snap["breakers"]["payments"]["state"] == "open"
    assert snap["queues"]["orders"]["capacity"] == 10
    assert snap["retries"]["payments"]["calls"] == 0
    assert snap["latency"]["checkout"]["count"] == 1
    assert snap["pools"]["db"]["in_use"] == 3
    assert snap["degradation"]["level"] == "full"
    assert snap["components"]["events"] == {"projection_lag": 4}
    assert snap["components"]["broken"]["error"].startswith("ZeroDivisionError")
    assert snap["time"].endswith("Z")
    json.dumps(snap)


def test_prometheus_exposition_uses_resilience4j_names() -> None:
    """Breaker state and rates use resilience4j metric names; latency is a summary."""
    doc, _ = make()
    text = exposition(doc.snapshot())
    assert 'resilience4j_circuitbreaker_state{name="payments",state="open"} 1' in text
    assert 'resilience4j_circuitbreaker_state{name="search",state="closed"} 1' in text
    assert 'resilience4j_circuitbreaker_failure_rate{name="search"} -1' in text
    assert 'stackmedic_operation_latency_seconds{operation="checkout",quantile="0.99"}' in text
    assert 'stackmedic_pool_in_use{name="db"} 3' in text
    assert "stackmedic_degradation_level 0" in text


def test_exposition_adds_bulkhead_retry_budget_and_queue_backpressure_metrics() -> None:
    """A held bulkhead slot, a refused budgeted retry, a delayed-then-rejected order and a
    rate limiter with a caller waiting show under resilience4j's bulkhead, retry and rate
    limiter names and stackmedic's; the text parses as Prometheus."""
    from prometheus_client.parser import text_string_to_metric_families

    diagnostics, _ = make()
    reports = Bulkhead("reports", max_concurrent=2)
    reports.acquire()
    diagnostics.add_pool("reports", reports.metrics)
    budget = RetryBudget("shared", ratio=0.0, min_retries=0)
    search = Retry("search", attempts=3, base_delay=0, budget=budget)
    with pytest.raises(ZeroDivisionError):
        search.call(lambda: 1 / 0)
    diagnostics.add_retry(search)
    diagnostics.add_retry(budget)
    queue: WorkQueue[int] = WorkQueue("backlog", _ignore, capacity=2, delay_at=0.5,
                                      max_delay=0.01)  # never started: nothing drains it
    asyncio.run(queue.put(1))
    with pytest.raises(QueueFullError):
        asyncio.run(queue.put(2))
    diagnostics.add_queue(queue)
    partner = RateLimiter("partner", rate=1, per=60.0, burst=2, max_wait=120.0)
    for _ in range(3):  # a burst of two, then the third caller waits its turn
        partner.reserve()
    diagnostics.add_rate_limiter(partner)
    snapshot = diagnostics.snapshot()
    assert snapshot["rate_limiters"]["partner"]["permitted"] == 3
    families = {f.name: f for f in text_string_to_metric_families(exposition(snapshot))}

    def value(family: str, **labels: str) -> float:
        return next(s.value for s in families[family].samples if s.labels == labels)

    assert value("resilience4j_bulkhead_available_concurrent_calls", name="reports") == 1
    assert value("resilience4j_bulkhead_max_allowed_concurrent_calls", name="reports") == 2
    assert "db" not in {s.labels["name"] for s in
                        families["resilience4j_bulkhead_max_allowed_concurrent_calls"].samples}
    assert value("stackmedic_retry_budget_denied", name="search") == 1
    assert value("stackmedic_retry_budget_denied", name="shared") == 1
    assert value("stackmedic_queue_delayed", name="backlog") == 1
    assert value("stackmedic_queue_rejected_recent", name="backlog") == 1
    assert value("resilience4j_circuitbreaker_state", name="payments", state="open") == 1
    assert families["resilience4j_circuitbreaker_not_permitted_calls"].type == "counter"
    assert families["resilience4j_retry_calls"].type == "counter"
    assert {s.name for s in families["resilience4j_retry_calls"].samples} == {
        "resilience4j_retry_calls_total"}
    assert value("resilience4j_retry_calls", name="search", kind="failed_with_retry") == 1
    assert value("resilience4j_retry_calls", name="payments",
                 kind="successful_without_retry") == 0
    assert "shared" not in {s.labels["name"] for s in families["resilience4j_retry_calls"].samples}
    assert value("resilience4j_ratelimiter_available_permissions", name="partner") == -1
    assert value("resilience4j_ratelimiter_waiting_threads", name="partner") == 1


async def _ignore(item: int) -> None:
    """A queue handler for queues that are never started."""


def test_observe_app_serves_its_routes_and_passes_the_rest_to_the_fallback() -> None:
    """/diagnostics and /metrics answer; other paths reach the wrapped app; admin is off."""
    doc, _ = make()

    async def fallback(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            return
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"teapot"})

    with serve(ObserveApp(diagnostics=doc, fallback=fallback)) as app:
        diag = httpx.get(app.url + "/diagnostics", timeout=10)
        metrics = httpx.get(app.url + "/metrics", timeout=10)
        other = httpx.get(app.url + "/products", timeout=10)
        admin = httpx.post(app.url + "/admin/breakers/payments/reset", timeout=10)
    assert diag.status_code == 200 and diag.json()["service"] == "shop"
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert other.status_code == 418
    assert admin.status_code == 418  # no admin token: the route does not exist


def test_admin_forces_states_and_degradation_and_validates_input() -> None:
    """Admin POSTs force a breaker state and the degradation level; bad input is a 400."""
    doc, registry = make()
    auth = {"Authorization": "Bearer s3cret-token"}
    with serve(ObserveApp(diagnostics=doc, admin_token="s3cret-token")) as app:
        forced = httpx.post(app.url + "/admin/breakers/search/state", headers=auth,
                            json={"state": "forced_open"}, timeout=10)
        bad = httpx.post(app.url + "/admin/breakers/search/state", headers=auth,
                         json={"state": "sideways"}, timeout=10)
        missing = httpx.post(app.url + "/admin/breakers/nope/reset", headers=auth, timeout=10)
        level = httpx.post(app.url + "/admin/degradation", headers=auth,
                           json={"level": "degraded"}, timeout=10)
        wrong = httpx.post(app.url + "/admin/degradation",
                           headers={"Authorization": "Bearer guess"}, json={}, timeout=10)
    assert forced.json() == {"breaker": "search", "state": "forced_open"}
    assert registry["search"].state.label == "forced_open"
    assert (bad.status_code, missing.status_code, wrong.status_code) == (400, 404, 401)
    assert level.json()["level"] == "degraded"


def test_importing_observe_loads_neither_entities_nor_the_event_store() -> None:
    """`import stackmedic.observe` leaves the entities and event-store packages unloaded."""
    import subprocess
    import sys

    code = ("import sys, stackmedic.observe; "
            "print(sorted(m for m in sys.modules if m.startswith(('stackmedic.entities', "
            "'stackmedic.eventstore'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_entities_and_event_store_state_appear_under_components(tmp_path: Any) -> None:
    """add_entities() and add_event_store() put live domain-event and store state in
    the document, read afresh at each snapshot."""
    from dataclasses import dataclass

    from stackmedic.entities import TimestampedEntity
    from stackmedic.eventstore import NO_STREAM, NewEvent, open_store

    @dataclass(eq=False)
    class Parcel(TimestampedEntity):
        id: str

        def entity_id(self) -> str:
            return self.id

        def validate(self) -> Any:
            return iter(())

    diagnostics = Diagnostics(service="shop")
    diagnostics.add_entities()
    with open_store(f"sqlite:///{tmp_path / 'events.db'}") as store:
        diagnostics.add_event_store(store, name="events")
        before = diagnostics.snapshot()["components"]
        parcel = Parcel("p-1")
        parcel.touch("packed")
        parcel.touch("shipped")
        store.append("parcel-1", [NewEvent("packed", {}), NewEvent("shipped", {})],
                     expected=NO_STREAM)
        after = diagnostics.snapshot()["components"]
    assert after["entities"]["undispatched_events"] \
        == before["entities"]["undispatched_events"] + 2
    assert after["entities"]["by_class"][Parcel.__qualname__] == 2
    assert (before["events"]["appended"], after["events"]["appended"]) == (0, 2)
    assert after["events"]["head"] == 2 and after["events"]["backend"] == "sqlite"
    json.dumps(after)
