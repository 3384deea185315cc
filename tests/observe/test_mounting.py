"""Every documented way of hosting the ObserveApp: wrapped around, or mounted in, a real app."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from stackmedic.findings import Severity
from stackmedic.observe import Diagnostics, Health, ObserveApp
from stackmedic.resilience import BreakerRegistry
from stackmedic.testing import run_components, with_symptom
from tests.app.servers import serve

TOKEN = "s3cret-token"


def observe_app(fallback: Any = None) -> ObserveApp:
    """Health, diagnostics, metrics and admin, with one breaker to reset."""
    registry = BreakerRegistry()
    registry.breaker("payments")
    registry.transition("payments", "forced_open")
    health = Health(service_id="shop")
    health.add("db:reachable", lambda: True)
    diagnostics = Diagnostics(service="shop")
    diagnostics.add_breakers(registry)
    return ObserveApp(health=health, diagnostics=diagnostics, admin_token=TOKEN,
                      fallback=fallback)


def fastapi_wrapped() -> Any:
    """`ObserveApp(..., fallback=fastapi_app)`: the observe routes at the root."""
    api = FastAPI()
    api.get("/products")(lambda: ["tea"])
    return observe_app(fallback=api)


def fastapi_mounted() -> Any:
    """`fastapi_app.mount("/ops", ObserveApp(...))`."""
    api = FastAPI()
    api.get("/products")(lambda: ["tea"])
    api.mount("/ops", observe_app())
    return api


def starlette_mounted() -> Any:
    """`Starlette(routes=[..., Mount("/ops", app=ObserveApp(...))])`."""
    async def products(request: Any) -> PlainTextResponse:
        return PlainTextResponse("tea")
    return Starlette(routes=[Route("/products", products), Mount("/ops", app=observe_app())])


@pytest.mark.parametrize(("build", "prefix"), [(fastapi_wrapped, ""), (fastapi_mounted, "/ops"),
                                               (starlette_mounted, "/ops")])
def test_every_route_answers_under_its_prefix_and_the_app_keeps_its_own(
        build: Callable[[], Any], prefix: str) -> None:
    """Health, diagnostics, metrics and admin answer under the prefix; the host app's
    own routes still reach it (the wrapped case guards the documented common form)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve(build()) as app, httpx.Client(base_url=app.url + prefix, timeout=10) as client:
        health = client.get("/health")
        diagnostics = client.get("/diagnostics")
        metrics = client.get("/metrics")
        reset = client.post("/admin/breakers/payments/reset", headers=auth)
        products = httpx.get(app.url + "/products", timeout=10)
    assert (health.status_code, health.headers["content-type"]) == (200, "application/health+json")
    assert health.json()["serviceId"] == "shop"
    assert diagnostics.json()["service"] == "shop"
    assert 'name="payments",state="forced_open"} 1' in metrics.text
    assert reset.json() == {"breaker": "payments", "state": "closed"}
    assert products.status_code == 200 and "tea" in products.text


def test_a_prefix_already_stripped_from_path_still_routes() -> None:
    """Older frameworks strip the mount prefix from `path` and leave it in `root_path`."""
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=observe_app(), root_path="/ops")
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            return await client.get("/health")  # scope: path "/health", root_path "/ops"

    assert asyncio.run(get()).status_code == 200


def test_the_doctor_reads_an_app_mounted_under_a_prefix() -> None:
    """With health_path and diagnostics_path pointing under the mount, the doctor sees it."""
    with serve(fastapi_mounted()) as app:
        findings = run_components({"shop": {
            "kind": "app", "url": app.url, "health_path": "/ops/health",
            "diagnostics_path": "/ops/diagnostics"}}).findings
    assert with_symptom(findings, "http.health.failing")[0].severity is Severity.OK
    breaker = with_symptom(findings, "resilience.breaker.open")[0]
    assert (breaker.evidence["name"], breaker.severity) == ("payments", Severity.CRITICAL)
