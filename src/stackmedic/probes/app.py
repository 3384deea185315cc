"""Component kind `app`: a service that embeds stackmedic, read through its endpoints.

    api: {kind: app, url: "http://127.0.0.1:8000", depends_on: [db, payments]}

One collector fetches `/health` (IETF health+json) and `/diagnostics` (the
`stackmedic.observe.Diagnostics` document) concurrently; the rules turn them into
findings: open and flapping breakers, deep or saturated queues, retry storms, slow or
failing operations, saturated connection pools and failing health sub-checks.
The documents come from a server we do not trust: every value is type-checked
before use, and a malformed one is skipped rather than raising.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

from pydantic import Field, model_validator

from stackmedic.checks import CollectContext, Facts, Probe, RuleContext
from stackmedic.config import ComponentBase
from stackmedic.findings import Finding, Severity
from stackmedic.probes._fetch import down_evidence, health_names
from stackmedic.probes._hostfacts import applicable_remedy
from stackmedic.thresholds import Threshold

_MAX_BODY = 1 << 20
_CAP = 10  # samples kept in evidence lists


class AppComponent(ComponentBase):
    """A stack-file entry: `{kind: app, url: http://127.0.0.1:8000}`."""

    url: str = Field(..., description="base URL of the service")
    health_path: str = Field("/health", description="path of the health+json endpoint")
    diagnostics_path: str = Field("/diagnostics", description="path of the diagnostics endpoint")
    headers: dict[str, str] = Field(default_factory=dict, description="headers to send")
    min_calls: int = Field(20, ge=1, description="operations with fewer calls are not judged")
    latency_quantile: str = Field("p99", pattern="^p(50|95|99)$",
                                  description="percentile judged against app.latency.high")
    flap_window: float = Field(300.0, gt=0, description="seconds over which transitions count")
    verify_tls: bool = True
    dependencies: dict[str, str] = Field(default_factory=dict, description=(
        "breaker, retry or operation name -> the depends_on component it protects or calls, "
        "where the names "
        "differ (one named like a depends_on component needs no entry): an open breaker "
        "or a failing operation is then explained by that component's failure only"))

    @model_validator(mode="after")
    def _dependencies_are_dependencies(self) -> AppComponent:
        for name, target in self.dependencies.items():
            if target not in self.depends_on:
                raise ValueError(f"dependencies maps {name!r} to {target!r}, which is not in "
                                 f"depends_on {self.depends_on}")
        return self

    def dependency_of(self, name: str) -> str | None:
        """The component behind breaker, retry or operation `name`, if the stack file says."""
        return self.dependencies.get(name) or (name if name in self.depends_on else None)


probe = Probe("app", AppComponent, description="a service embedding stackmedic (health, "
              "diagnostics endpoints)")


@probe.collector("endpoints", timeout=5.0)
async def endpoints(component: AppComponent, ctx: CollectContext) -> Facts | None:
    """GET the health and diagnostics documents, with status, timing and parse errors."""
    import httpx

    base = component.url.rstrip("/")
    timeout = httpx.Timeout(max(0.1, ctx.remaining() - 0.05))
    async with httpx.AsyncClient(timeout=timeout, verify=component.verify_tls,
                                 headers=component.headers) as client:
        health, diagnostics = await asyncio.gather(
            _fetch(client, base + component.health_path),
            _fetch(client, base + component.diagnostics_path))
    return {"url": base, "health": health, "diagnostics": diagnostics}


async def _fetch(client: Any, url: str) -> dict[str, Any]:
    import httpx

    start = time.monotonic()
    out: dict[str, Any] = {"url": url, "reachable": False, "status_code": None, "body": None,
                           "error": None}
    try:
        async with client.stream("GET", url) as response:
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > _MAX_BODY:
                    out["error"] = f"body larger than {_MAX_BODY} bytes"
                    break
            out["reachable"], out["status_code"] = True, response.status_code
    except httpx.HTTPError as err:
        out["error"] = f"{type(err).__name__}: {err}"[:300]
        return out
    finally:
        out["elapsed_ms"] = round((time.monotonic() - start) * 1000, 1)
    if out["error"] is None:
        try:
            out["body"] = json.loads(b"".join(chunks))
        except ValueError as err:
            out["error"] = f"not JSON: {err}"[:300]
    return out


# --- helpers for untrusted documents ---------------------------------------------------

def _section(facts: Facts, key: str) -> dict[str, dict[str, Any]]:
    body = facts.get("diagnostics", {}).get("body")
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, dict) and "error" not in v}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None


def _urls(facts: Facts, ctx: RuleContext) -> dict[str, str]:
    """The service's URL and those of its diagnostics and admin routes, for the runbooks:
    they may be mounted under a prefix (`/ops/diagnostics` → `/ops/admin`), not at the root."""
    path = _config(ctx).diagnostics_path
    return {"url": facts["url"], "diagnostics_url": facts["url"] + path,
            "admin_url": facts["url"] + path.rsplit("/", 1)[0] + "/admin"}


def _config(ctx: RuleContext) -> AppComponent:
    assert isinstance(ctx.config, AppComponent)
    return ctx.config


def _ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds a person reads: 2.515e-05 → 0.025, 0.01412 → 14.1."""
    if seconds is None:
        return None
    ms = seconds * 1000
    return round(ms, 3 if abs(ms) < 1 else 1)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


# --- rules -----------------------------------------------------------------------------

@probe.rule("app.reachable", uses="endpoints", symptoms=["http.down", "http.status.error"])
def reachable(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """The service answers, and its diagnostics endpoint serves a JSON document."""
    diag = facts["diagnostics"]
    error = diag["error"] or ""
    evidence = {"url": diag["url"], "status_code": diag["status_code"], "error": error,
                "error_kind": error.split(":", 1)[0], "phase": "request", "expected": 200,
                "elapsed_ms": diag.get("elapsed_ms")}
    if not diag["reachable"] and not facts["health"]["reachable"]:
        evidence.update(down_evidence(facts["url"], _down_kind(error)))
        yield applicable_remedy(ctx.finding(
            "http.down", Severity.CRITICAL, f"{facts['url']} is unreachable: {diag['error']}",
            evidence=evidence, identity=("url",),
            cause="the service is not running or not listening on this address"))
    elif diag["status_code"] != 200 or not isinstance(diag["body"], dict):
        yield ctx.finding("http.status.error", Severity.WARNING,
                          f"{diag['url']} answered {diag['status_code']}, not a diagnostics "
                          "document", evidence=evidence, identity=("url",),
                          observed=diag["status_code"],
                          cause="the service does not mount stackmedic.observe's ObserveApp "
                          "at this path (or diagnostics_path is wrong)")
    else:
        yield ctx.finding("http.status.error", Severity.OK, "diagnostics endpoint answers",
                          evidence=evidence, identity=("url",), observed=200)


def _down_kind(error: str) -> str | None:
    """The `http` kind's error kind (refused, timeout, dns) of an httpx error text, which
    picks the http.down steps that apply; None when it says neither."""
    name, _, text = error.partition(":")
    text = text.lower()
    if "Timeout" in name:
        return "timeout"
    if "refused" in text:
        return "refused"
    if any(word in text for word in ("name or service", "name resolution", "nodename")):
        return "dns"
    return None


@probe.rule("app.health", uses="endpoints", symptoms=["http.health.failing"])
def health(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """The health document's overall status, naming the failing sub-checks."""
    doc = facts["health"]
    body = doc["body"]
    if not isinstance(body, dict) or body.get("status") not in ("pass", "warn", "fail"):
        return
    failing: list[dict[str, Any]] = []
    checks = body.get("checks")
    for key, entries in (checks.items() if isinstance(checks, dict) else []):
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("status") in ("warn", "fail"):
                failing.append({"check": str(key)[:100], "status": entry["status"],
                                "observed": _num(entry.get("observedValue")),
                                "unit": str(entry.get("observedUnit") or "")[:20],
                                "output": str(entry.get("output", ""))[:200]})
    status = body["status"]
    severity = {"pass": Severity.OK, "warn": Severity.WARNING, "fail": Severity.CRITICAL}[status]
    names = ", ".join(f["check"] for f in failing[:_CAP])
    yield applicable_remedy(ctx.finding(
        "http.health.failing", severity, f"health is {status}" + (f": {names}" if failing else ""),
        observed=len(failing), unit="checks",
        evidence={"url": doc["url"], "status": doc["status_code"], "reported": status,
                  "failing": failing[:_CAP],
                  **health_names([f["check"] for f in failing[:_CAP]], doc["url"])},
        identity=("url",), cause=None if not failing else f"the sub-check(s) {names} report a "
        "problem with that dependency"))


@probe.rule("app.breakers", uses="endpoints",
            symptoms=["resilience.breaker.open", "resilience.breaker.flapping"],
            thresholds={"resilience.breaker.flapping": Threshold(4, 10, unit="transitions")})
def breakers(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Open (or forced open, or half-open) breakers, and breakers that keep changing state."""
    body = facts["diagnostics"].get("body") or {}
    now = _num(body.get("epoch")) or time.time()
    window = _config(ctx).flap_window
    for name, b in sorted(_section(facts, "breakers").items()):
        state = str(b.get("state"))
        evidence: dict[str, Any] = {
            "name": name, "dependency": _config(ctx).dependency_of(name),
            "state": state, "failure_rate": _num(b.get("failure_rate")),
            "slow_call_rate": _num(b.get("slow_call_rate")),
            "retry_after": _num(b.get("retry_after")),
            "not_permitted_calls": _num(b.get("not_permitted_calls")),
            "failure_rate_threshold": _num(b.get("failure_rate_threshold")),
            **_urls(facts, ctx)}
        severity = {"open": Severity.CRITICAL, "forced_open": Severity.CRITICAL,
                    "half_open": Severity.WARNING}.get(state, Severity.OK)
        wait = evidence["retry_after"]
        summary = (f"breaker {name!r} is {state}" +
                   (f" (failure rate {_pct(evidence['failure_rate'])}"
                    f", half-open in {wait:.0f}s)" if wait is not None else ""))
        yield ctx.finding("resilience.breaker.open", severity, summary, evidence=evidence,
                          identity=("name",), observed=state,
                          cause=f"calls to the dependency behind {name!r} failed or were slow "
                          "often enough to trip it" if severity is not Severity.OK else None)
        raw = b.get("transitions")
        transitions = [{"at": _num(t.get("at")), "from": str(t.get("from"))[:20],
                        "to": str(t.get("to"))[:20]}
                       for t in (raw if isinstance(raw, list) else []) if isinstance(t, dict)
                       and (_num(t.get("at")) or 0) >= now - window]
        flips = len(transitions)
        yield ctx.judge("resilience.breaker.flapping", flips,
                        f"breaker {name!r} changed state {flips} times in {window:.0f}s",
                        evidence={"name": name, "dependency": _config(ctx).dependency_of(name),
                                  "transitions": transitions[-_CAP:],
                                  "window_seconds": window, **_urls(facts, ctx)},
                        identity=("name",),
                        cause="the dependency recovers and fails again, or the breaker's "
                        "window and wait are too short for its traffic")


@probe.rule("app.queues", uses="endpoints",
            symptoms=["resilience.queue.depth_high", "resilience.queue.saturated"],
            thresholds={"resilience.queue.depth_high": Threshold(0.8, 0.95, unit="ratio"),
                        "resilience.queue.saturated": Threshold(1, 10, unit="rejections")})
def queues(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Queue depth against capacity, and work rejected by backpressure in the last minute."""
    for name, q in sorted(_section(facts, "queues").items()):
        size, capacity = _num(q.get("size")), _num(q.get("capacity"))
        if size is None or not capacity:
            continue
        rejected = int(_num(q.get("rejected_recent")) or 0)
        evidence = {"name": name, "size": int(size), "capacity": int(capacity),
                    **_urls(facts, ctx),
                    "busy_workers": _num(q.get("busy_workers")), "workers": _num(q.get("workers")),
                    "rejected": _num(q.get("rejected")), "oldest_age": _num(q.get("oldest_age")),
                    "rejected_recent": rejected}
        ratio = size / capacity
        yield ctx.judge("resilience.queue.depth_high", ratio,
                        f"queue {name!r} holds {int(size)} of {int(capacity)} ({ratio:.0%})",
                        evidence=evidence, identity=("name",),
                        cause="consumers are slower than producers (slow handler or dependency,"
                        " too few workers)")
        finding = ctx.judge("resilience.queue.saturated", rejected,
                            f"queue {name!r} rejected {rejected} item(s) in the last minute",
                            evidence=evidence, identity=("name",),
                            cause="the queue is at its backpressure limit: producers are "
                            "being delayed and turned away")
        if size >= capacity and finding.severity is not Severity.CRITICAL:
            finding = ctx.finding("resilience.queue.saturated", Severity.CRITICAL,
                                  f"queue {name!r} is full ({int(size)}/{int(capacity)})",
                                  evidence=evidence, identity=("name",), observed=rejected,
                                  cause=finding.cause)
        yield finding


@probe.rule("app.retries", uses="endpoints", symptoms=["resilience.retry.storm"],
            thresholds={"resilience.retry.storm": Threshold(0.5, 1.0, unit="retries/call")})
def retries(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Retries per call over the retry policy's window."""
    for name, r in sorted(_section(facts, "retries").items()):
        calls, per_call = _num(r.get("calls")), _num(r.get("retries_per_call"))
        if calls is None or per_call is None or calls < _config(ctx).min_calls:
            continue
        yield ctx.judge("resilience.retry.storm", per_call,
                        f"{name!r} makes {per_call:.2f} retries per call ({int(calls)} calls)",
                        evidence={"name": name, "dependency": _config(ctx).dependency_of(name),
                                  "calls": int(calls), "retries_per_call": per_call,
                                  **_urls(facts, ctx),
                                  "retries": _num(r.get("retries")),
                                  "budget": r.get("budget"), "budget_ratio": r.get("budget_ratio"),
                                  "budget_denied": _num(r.get("budget_denied"))},
                        identity=("name",),
                        cause="the dependency fails for most calls and every caller retries it")


@probe.rule("app.latency", uses="endpoints", symptoms=["app.latency.high", "app.error_rate.high"],
            thresholds={"app.latency.high": Threshold(1.0, 5.0, unit="s"),
                        "app.error_rate.high": Threshold(0.05, 0.2, unit="ratio")})
def latency(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Per-operation latency percentile and error rate, once an operation has enough calls."""
    quantile = _config(ctx).latency_quantile
    for op, stats in sorted(_section(facts, "latency").items()):
        count = _num(stats.get("count")) or 0
        value = _num(stats.get(quantile))
        if count < _config(ctx).min_calls or value is None:
            continue
        rate = _num(stats.get("error_rate")) or 0.0
        evidence = {"operation": op, "count": int(count), "quantile": quantile,
                    **_urls(facts, ctx),
                    **{f"{k}_ms": _ms(_num(stats.get(k))) for k in ("p50", "p95", "p99", "max")},
                    "error_rate": _num(stats.get("error_rate")),
                    "errors": _num(stats.get("errors")),
                    "dependency": _config(ctx).dependency_of(op)}
        yield ctx.judge("app.latency.high", value,
                        f"{op!r} {quantile} is {value * 1000:.0f} ms over {int(count)} calls",
                        evidence=evidence, identity=("operation",),
                        cause=f"{op!r} waits on something slow (a dependency, a lock, a pool)")
        yield ctx.judge("app.error_rate.high", rate,
                        f"{op!r} fails {rate:.1%} of {int(count)} calls", evidence=evidence,
                        identity=("operation",), cause=f"{op!r} raises errors; its dependency "
                        "is the usual suspect")


@probe.rule("app.pools", uses="endpoints", symptoms=["db.pool.saturated"],
            thresholds={"db.pool.saturated": Threshold(0.8, 0.95, unit="ratio")})
def pools(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Connection pools the app registered: connections in use against the pool's maximum.

    A Bulkhead registered as a pool is judged the same, worded as concurrent-call slots.
    """
    for name, p in sorted(_section(facts, "pools").items()):
        in_use, maximum = _num(p.get("in_use")), _num(p.get("max"))
        if in_use is None or not maximum:
            continue
        ratio = in_use / maximum
        if "max_waiting" in p:  # only a Bulkhead reports it
            summary = (f"bulkhead {name!r} has {int(in_use)} of {int(maximum)} concurrent-call "
                       "slots in use")
            cause = ("calls through the bulkhead run too long (a slow dependency) or it has "
                     "too few slots for the load")
        else:
            summary = f"pool {name!r} has {int(in_use)} of {int(maximum)} connections in use"
            cause = ("requests hold connections too long (slow queries, transactions kept "
                     "open across I/O) or the pool is too small for the load")
        yield ctx.judge("db.pool.saturated", ratio, f"{summary} ({ratio:.0%})",
                        evidence={"name": name, "in_use": int(in_use), "max": int(maximum),
                                  **_urls(facts, ctx),
                                  "waiting": _num(p.get("waiting"))}, identity=("name",),
                        cause=cause)
