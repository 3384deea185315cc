"""The `app` component kind against the running example shop (real PostgreSQL and Redis)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from stackmedic.findings import Finding, Severity
from stackmedic.testing import run_components, symptoms, with_symptom
from tests.app.servers import ServedApp, serve
from tests.fixtures.ports import free_port

pytest.importorskip("fastapi")
pytest.importorskip("psycopg_pool")

TOKEN = "test-admin-token-123"


@pytest.fixture
def shop(pg_shared: Any, redis_factory: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Start the example shop against throwaway servers; payments point at a closed port."""
    from examples.shop.app import create_app

    redis = redis_factory()

    @contextmanager
    def start(**options: Any) -> Iterator[tuple[ServedApp, Any]]:
        app = create_app(dsn=pg_shared.dsn(), redis_url=redis.url,
                         payments_url=f"http://127.0.0.1:{free_port()}", admin_token=TOKEN,
                         **options)
        with serve(app) as served:
            yield served, redis

    yield start


def doctor(url: str, **options: Any) -> list[Finding]:
    thresholds = options.pop("thresholds", None)
    spec = {"kind": "app", "url": url, "min_calls": 5, **options}
    return run_components({"shop": spec}, thresholds=thresholds).findings


def only(findings: list[Finding], symptom: str, **evidence: Any) -> Finding:
    matches = [f for f in with_symptom(findings, symptom)
               if all(f.evidence.get(k) == v for k, v in evidence.items())]
    assert len(matches) == 1, (symptom, evidence, findings)
    return matches[0]


def wait_for(condition: Callable[[], bool]) -> None:
    """Poll until `condition()` holds (bounded: 10 s)."""
    for _ in range(200):
        if condition():
            return
        threading.Event().wait(0.05)
    raise AssertionError("condition never held")


def test_a_healthy_shop_has_no_problems_and_reports_its_numbers(shop: Any) -> None:
    """Under normal traffic every check is ok and carries the measured value."""
    with shop() as (app, _redis):
        for pid in range(10):
            assert httpx.get(f"{app.url}/products/{pid % 3}", timeout=10).status_code == 200
        findings = doctor(app.url)
    assert symptoms(findings, "shop") == set(), [f.summary for f in findings if f.is_problem]
    breaker = only(findings, "resilience.breaker.open", name="cache")
    assert (breaker.severity, breaker.observed) == (Severity.OK, "closed")
    latency = only(findings, "app.latency.high", operation="products.get")
    assert latency.severity is Severity.OK and latency.evidence["count"] == 10
    assert only(findings, "http.health.failing").severity is Severity.OK
    assert only(findings, "db.pool.saturated", name="db").severity is Severity.OK


def test_payment_outage_opens_the_breaker_and_shows_retries_and_errors(shop: Any) -> None:
    """Failing payments trip breaker 'payments'; the doctor names it with its retry-after."""
    with shop() as (app, _redis):
        codes = [httpx.post(f"{app.url}/pay/{i}", timeout=10).status_code for i in range(10)]
        findings = doctor(app.url)
    # Every attempt counts: 3 of the first call, the breaker trips on the second call's
    # second attempt, and from then on calls are refused without reaching the network.
    assert codes[0] == 502 and set(codes[1:]) == {503}
    opened = only(findings, "resilience.breaker.open", name="payments")
    assert opened.severity is Severity.CRITICAL and opened.evidence["failure_rate"] == 1.0
    assert 0 < opened.evidence["retry_after"] <= 30
    assert opened.remedy is not None and any(
        f"{app.url}/admin/breakers/payments/reset" in step for step in opened.remedy.steps)
    errors = only(findings, "app.error_rate.high", operation="payments")
    assert errors.severity is Severity.CRITICAL and errors.observed == 1.0
    retries = only(findings, "resilience.retry.storm", name="payments")
    assert retries.severity is Severity.OK  # the open breaker stopped the retries


def test_retries_against_a_dead_dependency_without_a_breaker_trip_are_a_storm(shop: Any) -> None:
    """With the breaker never tripping, every call is retried twice: a critical retry storm."""
    with shop(breaker_minimum_calls=1000) as (app, _redis):
        codes = [httpx.post(f"{app.url}/pay/{i}", timeout=10).status_code for i in range(10)]
        findings = doctor(app.url)
    assert set(codes) == {502}
    storm = only(findings, "resilience.retry.storm", name="payments")
    assert (storm.severity, storm.observed, storm.evidence["calls"]) == (Severity.CRITICAL, 2.0,
                                                                        10)


def test_a_full_order_queue_is_reported_saturated(shop: Any) -> None:
    """Orders beyond the queue's backpressure level are rejected and reported as saturated."""
    with shop(order_workers=1, order_capacity=5, order_seconds=60,
              order_max_delay=0.02) as (app, _redis):
        codes = [httpx.post(f"{app.url}/orders", timeout=10).status_code for _ in range(16)]
        findings = doctor(app.url)
    # One order in the worker, four queued (delay_at=0.8 of 5): the other eleven turned away.
    assert (codes.count(202), codes.count(503)) == (5, 11)
    saturated = only(findings, "resilience.queue.saturated", name="orders")
    assert saturated.severity is Severity.CRITICAL
    assert saturated.evidence["rejected_recent"] == codes.count(503)
    depth = only(findings, "resilience.queue.depth_high", name="orders")
    assert depth.severity in (Severity.WARNING, Severity.CRITICAL) and depth.observed >= 0.8


def test_requests_holding_every_pooled_connection_saturate_the_pool(shop: Any) -> None:
    """With all pool connections held by slow requests, db.pool.saturated is critical."""
    with shop(pool_max=3, report_slots=3) as (app, _redis):
        threads = [threading.Thread(target=httpx.get, args=(f"{app.url}/report?seconds=3",),
                                    kwargs={"timeout": 30}) for _ in range(3)]
        for t in threads:
            t.start()
        wait_for(lambda: httpx.get(f"{app.url}/diagnostics", timeout=10).json()[
            "pools"]["db"]["in_use"] == 3)
        findings = doctor(app.url)
        for t in threads:
            t.join(30)
    pool = only(findings, "db.pool.saturated", name="db")
    assert (pool.severity, pool.observed, pool.evidence["max"]) == (Severity.CRITICAL, 1.0, 3)
    assert pool.summary == "pool 'db' has 3 of 3 connections in use (100%)"


def test_a_dead_redis_fails_its_health_subcheck(shop: Any) -> None:
    """When Redis dies, the health finding is critical and names redis:responseTime."""
    with shop() as (app, redis):
        redis.destroy()
        findings = doctor(app.url)
    health = only(findings, "http.health.failing")
    assert health.severity is Severity.CRITICAL
    assert health.evidence["failing_checks"] == "redis:responseTime"


def test_latency_over_threshold_is_reported_per_operation(shop: Any) -> None:
    """An operation whose p99 is over the configured threshold gets app.latency.high."""
    with shop() as (app, _redis):
        for _ in range(6):
            httpx.get(f"{app.url}/report?seconds=0.05", timeout=10)
        findings = doctor(app.url, thresholds={"app.latency.high": {"warning": 0.04,
                                                                   "critical": 30}})
    slow = only(findings, "app.latency.high", operation="report")
    assert slow.severity is Severity.WARNING and slow.observed >= 0.05


def test_admin_endpoint_resets_a_breaker_only_with_the_token(shop: Any) -> None:
    """POST /admin/breakers/x/reset needs the bearer token, is POST-only, and closes it."""
    with shop() as (app, _redis):
        for i in range(6):
            httpx.post(f"{app.url}/pay/{i}", timeout=10)
        reset = f"{app.url}/admin/breakers/payments/reset"
        assert httpx.post(reset, timeout=10).status_code == 401
        assert httpx.get(reset, timeout=10).status_code == 405
        ok = httpx.post(reset, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        state = httpx.get(f"{app.url}/diagnostics", timeout=10).json()["breakers"]["payments"]
    assert ok.status_code == 200 and ok.json()["state"] == "closed"
    assert state["state"] == "closed"


def test_unreachable_app_is_http_down() -> None:
    """An app component nobody listens for is reported down, not crashed on."""
    findings = doctor(f"http://127.0.0.1:{free_port()}")
    down = only(findings, "http.down")
    assert down.severity is Severity.CRITICAL and down.evidence["error_kind"] == "ConnectError"


def test_malformed_documents_never_crash_a_rule() -> None:
    """Garbage in the diagnostics document yields no failed checks, only what parses."""
    from stackmedic.observe import ObserveApp

    class Garbage(ObserveApp):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await super().__call__(scope, receive, send)
            body = (b'{"breakers": [1], "queues": {"q": {"size": "x", "capacity": 0}},'
                    b' "latency": {"op": {"count": 1e309, "p99": null}}, "pools": 3,'
                    b' "retries": {"r": {"calls": true}}, "epoch": "now"}')
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return None

    with serve(Garbage()) as app:
        findings = doctor(app.url)
    assert not with_symptom(findings, "stackmedic.check.failed"), findings
    assert symptoms(findings, "shop") == set()


def test_products_beyond_the_rate_limit_get_429_with_retry_after(shop: Any) -> None:
    """Past the limiter's burst, /products answers 429; diagnostics show the limiter under
    rate_limiters with no permit left and count the rejections, as do the metrics."""
    with shop(product_rate=0.01, product_burst=3) as (app, _redis):
        replies = [httpx.get(f"{app.url}/products/1", timeout=10) for _ in range(5)]
        limiter = httpx.get(f"{app.url}/diagnostics", timeout=10).json()[
            "rate_limiters"]["products"]
        metrics = httpx.get(f"{app.url}/metrics", timeout=10).text
    assert [r.status_code for r in replies] == [200, 200, 200, 429, 429]
    assert int(replies[3].headers["Retry-After"]) >= 1
    assert (limiter["permitted"], limiter["rejected"]) == (3, 2)
    assert (limiter["available_permissions"], limiter["waiting"]) == (0, 0)
    assert 'resilience4j_ratelimiter_available_permissions{name="products"} 0' in metrics


def test_a_report_beyond_the_bulkhead_is_refused_and_the_bulkhead_shows_full(shop: Any) -> None:
    """With both report slots held, a third report gets 503; the doctor sees the full bulkhead
    and words it as concurrent-call slots, not connections."""
    with shop(report_slots=2) as (app, _redis):
        threads = [threading.Thread(target=httpx.get, args=(f"{app.url}/report?seconds=3",),
                                    kwargs={"timeout": 30}) for _ in range(2)]
        for t in threads:
            t.start()
        wait_for(lambda: httpx.get(f"{app.url}/diagnostics", timeout=10).json()[
            "pools"]["reports"]["in_use"] == 2)
        refused = httpx.get(f"{app.url}/report?seconds=0", timeout=10)
        bulkhead = httpx.get(f"{app.url}/diagnostics", timeout=10).json()["pools"]["reports"]
        metrics = httpx.get(f"{app.url}/metrics", timeout=10).text
        findings = doctor(app.url)
        for t in threads:
            t.join(30)
    assert refused.status_code == 503
    assert (bulkhead["in_use"], bulkhead["max"], bulkhead["rejected"]) == (2, 2, 1)
    assert 'resilience4j_bulkhead_available_concurrent_calls{name="reports"} 0' in metrics
    full = only(findings, "db.pool.saturated", name="reports")
    assert (full.severity, full.observed) == (Severity.CRITICAL, 1.0)
    assert full.summary == "bulkhead 'reports' has 2 of 2 concurrent-call slots in use (100%)"
    assert "connection" not in (full.cause or "")


def test_order_placement_is_traced_with_its_phases(shop: Any) -> None:
    """Each POST /orders leaves a PlaceOrder trace with its phases in /diagnostics."""
    with shop() as (app, _redis):
        for priority in (1, 2):
            assert httpx.post(f"{app.url}/orders?priority={priority}",
                              timeout=10).status_code == 202
        traces = httpx.get(f"{app.url}/diagnostics", timeout=10).json()["components"]["traces"]
    assert traces["stats"]["PlaceOrder"]["count"] == 2
    newest = traces["recent"][0]
    assert (newest["name"], newest["status"], newest["attributes"]) == ("PlaceOrder", "ok",
                                                                        {"priority": 2})
    assert [p["name"] for p in newest["phases"]] == ["check_degradation", "enqueue"]
