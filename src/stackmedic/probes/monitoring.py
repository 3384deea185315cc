"""Component kinds `prometheus` and `grafana`: is the monitoring itself healthy?

    prom:    {kind: prometheus, url: "http://127.0.0.1:9090"}
    grafana: {kind: grafana, url: "http://127.0.0.1:3000"}

Prometheus: `/-/healthy` must answer 200 (`monitoring.service.down`), and every
active scrape target of `/api/v1/targets` must be up (`monitoring.target.down`, one
finding per down target with its job, instance, scrape URL, last error and last
scrape). Grafana: `/api/health` must answer 200 with `"database": "ok"`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from pydantic import Field

from stackmedic.checks import CollectContext, Facts, Probe, RuleContext
from stackmedic.findings import Finding, Severity
from stackmedic.probes._fetch import HttpSettings, discover_url, exchange

__all__ = ["GrafanaComponent", "PrometheusComponent", "grafana", "prometheus"]

_MAX_DOWN = 50  # down targets kept as facts; findings beyond that would bury the report


class PrometheusComponent(HttpSettings):
    """A stack-file entry: `{kind: prometheus, url: "http://127.0.0.1:9090"}`."""

    max_bytes: int = Field(20_000_000, gt=0, description="cap on the targets API answer")


class GrafanaComponent(HttpSettings):
    """A stack-file entry: `{kind: grafana, url: "http://127.0.0.1:3000"}`."""


prometheus = Probe("prometheus", PrometheusComponent, default_ports=(9090,), discover=discover_url,
                   description="a Prometheus server (health, scrape targets)")
grafana = Probe("grafana", GrafanaComponent, default_ports=(3000,), discover=discover_url,
                description="a Grafana server (health, database)")


def _url(component: HttpSettings, path: str) -> str:
    return component.url.rstrip("/") + path


async def _get_json(component: HttpSettings, ctx: CollectContext,
                    path: str) -> tuple[dict[str, Any], Any]:
    """(record of the exchange, parsed JSON body or None)."""
    record = await exchange(component, ctx, _url(component, path), headers=component.headers,
                            keep_body=True)
    body = record.get("vars", {}).pop("body", None)
    try:
        return record, json.loads(body) if body else None
    except (ValueError, RecursionError):  # RecursionError: `[[[[…` nested past the stack
        return record, None


@prometheus.collector("api", timeout=10.0)
async def prometheus_api(component: PrometheusComponent, ctx: CollectContext) -> Facts | None:
    """Read /-/healthy and the active targets of /api/v1/targets."""
    (healthy, _), (targets, data) = await asyncio.gather(
        _get_json(component, ctx, "/-/healthy"),
        _get_json(component, ctx, "/api/v1/targets?state=active"))
    facts: Facts = {"url": component.url, "healthy": healthy}
    inner = data.get("data") if isinstance(data, dict) else None
    active = inner.get("activeTargets") if isinstance(inner, dict) else None
    if not isinstance(active, list):
        why = targets.get("error") or (
            f"answer cut at max_bytes={component.max_bytes}" if targets.get("truncated") else
            f"no activeTargets in the answer (status {targets.get('status')})")
        facts["targets"] = {"url": targets["url"], "error": why}
        return facts
    entries = [t for t in active if isinstance(t, dict)]
    # "unknown" is a target not scraped yet (just added or reloaded), not a failed one.
    pending = [t for t in entries if t.get("health") == "unknown"]
    down = [t for t in entries if t.get("health") not in ("up", "unknown")]
    facts["targets"] = {"active": len(active), "down_count": len(down),
                        "pending": len(pending),
                        "down": [_down_target(t) for t in down[:_MAX_DOWN]]}
    return facts


def _down_target(target: dict[str, Any]) -> dict[str, Any]:
    """The facts of one down target, whatever odd types the server put in it."""
    labels = target.get("labels")
    labels = labels if isinstance(labels, dict) else {}
    return {"job": str(labels.get("job") or target.get("scrapePool") or "?"),
            "instance": str(labels.get("instance") or "?"),
            "scrape_url": str(target.get("scrapeUrl") or ""),
            "health": str(target.get("health")),
            "last_error": str(target.get("lastError") or "")[:300],
            "last_scrape": str(target.get("lastScrape") or "")}


def _service_down(ctx: RuleContext, name: str, record: dict[str, Any],
                  problem: str | None = None) -> Finding:
    """ok, or critical naming why the monitoring service's health check fails."""
    evidence = {"url": record["url"], "status": record.get("status"),
                "error": record.get("error"), "body_excerpt": record.get("excerpt", "")}
    if record["connected"] and record["status"] == 200 and problem is None:
        return ctx.finding("monitoring.service.down", Severity.OK, f"{name} is healthy",
                           observed=record["status"], evidence=evidence, identity=("url",))
    why = (f"did not answer: {record['error']}" if not record["connected"] else
           problem or f"answered {record['status']}")
    return ctx.finding("monitoring.service.down", Severity.CRITICAL,
                       f"{name} health check {record['url']} {why}",
                       observed=record.get("status"), evidence=evidence, identity=("url",),
                       cause="the monitoring service is down or degraded: alerts and "
                             "dashboards for the whole stack are blind until it recovers")


@prometheus.rule("prometheus.health", uses="api", symptoms=["monitoring.service.down"])
def prometheus_health(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Prometheus answers /-/healthy with 200."""
    yield _service_down(ctx, "Prometheus", facts["healthy"])


@prometheus.rule("prometheus.targets", uses="api", symptoms=["monitoring.target.down"])
def prometheus_targets(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Every active scrape target is up; each down one is named with its last error."""
    targets = facts["targets"]
    if "error" in targets and not facts["healthy"]["connected"]:
        return  # Prometheus does not answer at all: the service-down finding says so
    if "error" in targets:
        # Not "ok": a targets API we could not read (auth, a proxy, a cut answer) says
        # nothing about the targets, even when /-/healthy answers.
        yield ctx.finding("monitoring.target.down", Severity.UNKNOWN,
                          f"scrape targets not checked: {targets['error']}",
                          evidence={"url": targets.get("url"), "error": targets["error"]},
                          identity=("url",))
        return
    if not targets["down"]:
        pending = targets.get("pending", 0)
        yield ctx.finding("monitoring.target.down", Severity.OK,
                          f"all {targets['active'] - pending} scraped targets are up"
                          + (f" ({pending} not scraped yet)" if pending else ""),
                          observed=0, evidence={"active": targets["active"],
                                                "pending": pending})
        return
    more = targets["down_count"] - len(targets["down"])
    for target in targets["down"]:
        yield ctx.finding(
            "monitoring.target.down", Severity.CRITICAL,
            f"scrape target {target['job']}/{target['instance']} is {target['health']}: "
            f"{target['last_error'] or 'no error recorded'}"
            + (f" ({more} more down targets not listed)" if more else ""),
            observed=targets["down_count"],
            evidence={**target, "prometheus": facts["url"].rstrip("/")},
            identity=("job", "instance"),
            cause="the target's exporter or service is down, or its /metrics endpoint "
                  "fails or is unreachable from Prometheus")


@grafana.collector("health", timeout=10.0)
async def grafana_health(component: GrafanaComponent, ctx: CollectContext) -> Facts | None:
    """Read /api/health."""
    record, data = await _get_json(component, ctx, "/api/health")
    return {"url": component.url, "health": record,
            "database": data.get("database") if isinstance(data, dict) else None,
            "version": data.get("version") if isinstance(data, dict) else None}


@grafana.rule("grafana.health", uses="health", symptoms=["monitoring.service.down"])
def grafana_health_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Grafana answers /api/health with 200 and its database ok."""
    database = facts["database"]
    problem = None
    if facts["health"].get("connected") and database != "ok":
        problem = f"reports database {database!r}"
    yield _service_down(ctx, "Grafana", facts["health"], problem)
