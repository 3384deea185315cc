"""Findings of the running shop about one dependency are explained by that dependency
only: an open breaker, and the failing operation named like it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from stackmedic.doctor import Run
from stackmedic.findings import Severity
from stackmedic.testing import run_components, with_symptom
from tests.app.servers import serve
from tests.fixtures.ports import free_port

pytest.importorskip("fastapi")
pytest.importorskip("psycopg_pool")

NAMED = ["by name", "by dependencies:"]


def payments_down(named: str, pg_shared: Any, redis_factory: Callable[..., Any]
                  ) -> tuple[Run, str]:
    """The shop after 10 payments against a closed port, diagnosed with a stack where it
    also depends on an unreachable ledger; the payment component's name is `payments`
    (matched by name) or `payment-api` (mapped with `dependencies:`)."""
    from examples.shop.app import create_app

    payments_port, ledger_port = free_port(), free_port()
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
            "ledger": {"kind": "tcp", "host": "127.0.0.1", "port": ledger_port},
        })
    return run, pay


@pytest.mark.parametrize("named", NAMED)
def test_an_open_breaker_is_explained_by_its_own_dependency(
        named: str, pg_shared: Any, redis_factory: Callable[..., Any]) -> None:
    """Payments down (nothing listens) trips breaker 'payments'; with a stack where the
    shop also depends on an unreachable service, the breaker is explained by the
    payment component's failure alone, which is a root cause."""
    run, pay = payments_down(named, pg_shared, redis_factory)
    by_fp = {f.fingerprint: f for f in run.findings}
    [opened] = [f for f in with_symptom(run.findings, "resilience.breaker.open")
                if f.evidence["name"] == "payments"]
    assert opened.severity is Severity.CRITICAL and opened.evidence["dependency"] == pay
    causes = [by_fp[fp] for fp in opened.explained_by]
    assert causes and {c.component for c in causes} == {pay}
    assert all(c.root_cause for c in causes)
    [refused] = [f for f in run.findings if f.component == "ledger" and f.is_problem]
    assert opened.fingerprint not in refused.explains


@pytest.mark.parametrize("named", NAMED)
def test_a_failing_operation_is_explained_by_its_own_dependency(
        named: str, pg_shared: Any, redis_factory: Callable[..., Any]) -> None:
    """Payments down makes operation 'payments' fail every call; its error-rate and
    latency findings name the payment component, and the error rate is explained by the
    payment component's failure alone."""
    run, pay = payments_down(named, pg_shared, redis_factory)
    by_fp = {f.fingerprint: f for f in run.findings}
    [slow] = [f for f in with_symptom(run.findings, "app.latency.high")
              if f.evidence["operation"] == "payments"]
    [failing] = [f for f in with_symptom(run.findings, "app.error_rate.high")
                 if f.evidence["operation"] == "payments"]
    assert slow.evidence["dependency"] == failing.evidence["dependency"] == pay
    assert failing.severity is Severity.CRITICAL
    assert {by_fp[fp].component for fp in failing.explained_by} == {pay}
