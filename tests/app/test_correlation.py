"""An open breaker in the running shop is explained by the dependency it guards only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from stackmedic.findings import Severity
from stackmedic.testing import run_components, with_symptom
from tests.app.servers import serve
from tests.fixtures.ports import free_port

pytest.importorskip("fastapi")
pytest.importorskip("psycopg_pool")


@pytest.mark.parametrize("named", ["by name", "by dependencies:"])
def test_an_open_breaker_is_explained_by_its_own_dependency(
        named: str, pg_shared: Any, redis_factory: Callable[..., Any]) -> None:
    """Payments down (nothing listens) trips breaker 'payments'; with a stack where the
    shop also depends on an unreachable service, the breaker is explained by the
    payment component's failure alone, which is a root cause."""
    from examples.shop.app import create_app

    payments_port, other_port = free_port(), free_port()
    app = create_app(dsn=pg_shared.dsn(), redis_url=redis_factory().url,
                     payments_url=f"http://127.0.0.1:{payments_port}")
    pay = "payments" if named == "by name" else "payment-api"
    with serve(app) as served:
        for i in range(10):
            httpx.post(f"{served.url}/pay/{i}", timeout=10)
        shop: dict[str, Any] = {"kind": "app", "url": served.url, "min_calls": 5,
                                "depends_on": [pay, "ledger"]}
        if pay != "payments":
            shop["dependencies"] = {"payments": pay}
        run = run_components({
            "shop": shop,
            pay: {"kind": "http", "url": f"http://127.0.0.1:{payments_port}/health"},
            "ledger": {"kind": "tcp", "host": "127.0.0.1", "port": other_port},
        })
    by_fp = {f.fingerprint: f for f in run.findings}
    [opened] = [f for f in with_symptom(run.findings, "resilience.breaker.open")
                if f.evidence["name"] == "payments"]
    assert opened.severity is Severity.CRITICAL and opened.evidence["dependency"] == pay
    causes = [by_fp[fp] for fp in opened.explained_by]
    assert causes and {c.component for c in causes} == {pay}
    assert all(c.root_cause for c in causes)
    [refused] = [f for f in run.findings if f.component == "ledger" and f.is_problem]
    assert opened.fingerprint not in refused.explains
