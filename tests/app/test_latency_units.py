"""App latency evidence carries its unit: milliseconds, rounded as a person reads them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.app.test_shop import doctor, only, shop

__all__ = ["shop"]  # the fixture, imported for this test


def test_latency_evidence_is_in_milliseconds(shop: Any) -> None:
    """The percentiles of app.latency.high are `*_ms` keys equal to the service's own
    seconds times 1000 (to the rounding), with no unitless `p50` left."""
    with shop() as (app, _redis):
        for pid in range(10):
            httpx.get(f"{app.url}/products/{pid % 3}", timeout=10)
        findings = doctor(app.url)
        measured = httpx.get(f"{app.url}/diagnostics", timeout=10).json()["latency"]
    evidence = only(findings, "app.latency.high", operation="products.get").evidence
    assert not {"p50", "p95", "p99", "max"} & evidence.keys()
    for key in ("p50", "p95", "p99", "max"):
        assert evidence[f"{key}_ms"] == pytest.approx(measured["products.get"][key] * 1000,
                                                      abs=0.05), key
