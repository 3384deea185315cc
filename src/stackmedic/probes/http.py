"""Component kind `http`: reachability, status, latency, health body, conditions,
auth and /metrics of one HTTP service.

    api: {kind: http, url: "http://127.0.0.1:8000/", health: /health, samples: 3,
          conditions: ["[BODY].status == \\"ok\\""], metrics: /metrics,
          endpoints: [{path: /admin, auth: required}]}

One async collector samples `url` and reads the health, metrics and extra endpoints
alongside (kept only if `url` answered); rules judge the recorded facts. Requests go
through a lean pooled HTTP/1.1 client (see `_http11` for why not httpx), one pool per
TLS setting shared by all components of a run, with bounded concurrency; every
request's timeout comes from what is left of the collector's deadline.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterable
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stackmedic.checks import CollectContext, Facts, Probe, RuleContext
from stackmedic.findings import Finding, Severity
from stackmedic.probes import _conditions
from stackmedic.probes._fetch import (
    HttpSettings,
    Target,
    discover_url,
    down_evidence,
    fetch_target,
    health_names,
    host_port,
)
from stackmedic.probes._hostfacts import applicable_remedy
from stackmedic.probes._tls import judge
from stackmedic.thresholds import Threshold

__all__ = ["HttpComponent", "HttpEndpoint", "probe"]


def _check_conditions(conditions: list[str]) -> list[str]:
    for text in conditions:
        _conditions.parse(text)  # ConditionError is a ValueError: pydantic reports it
    return conditions


def _check_path(path: str | None) -> str | None:
    """A path or absolute http(s) URL a request can be made to (checked at validation:
    `http://[bad` would otherwise only fail when the doctor runs)."""
    if path is None:
        return path
    try:
        parts = urlsplit(path)
        _ = parts.port
    except ValueError as err:
        raise ValueError(f"invalid path or URL {path!r}: {err}") from None
    if parts.scheme and (parts.scheme not in ("http", "https") or not parts.hostname):
        raise ValueError(f"{path!r}: an absolute URL must be http:// or https:// with a host")
    return path


class HttpEndpoint(BaseModel):
    """An extra path of the same service with its own expectations."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str = Field(..., description="path (or absolute URL) to request")
    expect_status: list[int] = Field(default_factory=lambda: [200])
    conditions: list[str] = Field(default_factory=list, description="Gatus-style conditions")
    auth: Literal["required", "none"] = Field(
        "none", description="required: must refuse requests without credentials")

    _conditions = field_validator("conditions")(_check_conditions)
    _path = field_validator("path")(_check_path)


class HttpComponent(HttpSettings):
    """A stack-file entry: `{kind: http, url: "http://127.0.0.1:8000/"}`."""

    url: str = Field(..., description="URL sampled for status and latency")
    health: str | None = Field(None, description="health endpoint path, e.g. /health")
    samples: int = Field(3, ge=1, le=50, description="requests to time for p50/p95")
    expect_status: list[int] = Field(default_factory=lambda: [200],
                                     description="status codes that count as success")
    conditions: list[str] = Field(default_factory=list, description="Gatus-style conditions")
    auth: Literal["required", "none"] = Field(
        "none", description="required: `url` must refuse requests without credentials")
    metrics: str | None = Field(None, description="Prometheus exposition path, e.g. /metrics")
    endpoints: list[HttpEndpoint] = Field(default_factory=list)

    _conditions = field_validator("conditions")(_check_conditions)
    _paths = field_validator("health", "metrics")(_check_path)


probe = Probe("http", HttpComponent, description="an HTTP service (status, latency, health)",
              default_ports=(8000, 8080), discover=discover_url)


@probe.collector("request", timeout=10.0)
async def request(component: HttpComponent, ctx: CollectContext) -> Facts | None:
    """Sample the URL while reading health, metrics and extra endpoints alongside.

    Concurrently, not after: samples of a slow service would otherwise eat the budget
    and the health endpoint would time out for our own lack of time, not the service's.
    """
    main = Target("main", component.url, component.expect_status, component.conditions,
                  component.auth)
    jobs = [fetch_target(component, ctx, Target(e.path, e.path, e.expect_status, e.conditions,
                                                e.auth)) for e in component.endpoints]
    roles = {role: path for role, path in (("health", component.health),
                                           ("metrics", component.metrics)) if path}
    jobs += [fetch_target(component, ctx, Target(role, path), role=role)
             for role, path in roles.items()]
    first, *results = await asyncio.gather(
        fetch_target(component, ctx, main, samples=component.samples), *jobs)
    facts: Facts = {"url": component.url, "verify": component.verify, "targets": [first]}
    if not first["record"]["connected"]:
        return facts  # the rest would only repeat that the service is down
    facts["targets"] += results[:len(component.endpoints)]
    facts.update(zip(roles, results[len(component.endpoints):], strict=True))
    return facts


def _targets(facts: Facts) -> list[dict[str, Any]]:
    return [t for t in facts.get("targets", []) if t["record"].get("connected")]


def _where(target: dict[str, Any]) -> str:
    return str(target["record"].get("url") or target["url"])


def _rejected_certificate(record: dict[str, Any]) -> dict[str, Any] | None:
    """The TLS facts of a request refused because the certificate does not verify: the
    server answered the handshake, so this is net.tls.invalid, not the service down."""
    tls: dict[str, Any] | None = record.get("tls")
    if record.get("error_kind") == "tls" and tls and tls.get("cert") and tls.get("problems"):
        return tls
    return None


def _samples(main: dict[str, Any]) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = main.get("samples") or [main["record"]]
    return samples


@probe.rule("http.reach", uses="request", symptoms=["http.down"])
def reach(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Whether the service answers at all (refused, timed out, DNS, TLS)."""
    samples = _samples(facts["targets"][0])
    failed = [s for s in samples if not s["connected"]]
    evidence = {"url": facts["url"], "samples": len(samples), "failed": len(failed)}
    if not failed:
        yield ctx.finding("http.down", Severity.OK, f"{facts['url']} answers",
                          observed=len(samples), evidence=evidence, identity=("url",))
        return
    worst = failed[0]
    if len(failed) == len(samples) and _rejected_certificate(worst):
        return  # it answers; http.tls says what is wrong with its certificate
    if worst["phase"] == "queued":  # our own limit, not the service: say so, never "down"
        yield ctx.finding("http.down", Severity.UNKNOWN, f"{facts['url']} was not checked: "
                          f"{worst['error']}", evidence={**evidence, "phase": "queued"},
                          identity=("url",), cause="too many components for the deadline; "
                          "raise --deadline or the component's timeout")
        return
    evidence.update({k: worst.get(k) for k in ("error_kind", "phase", "error", "tls")
                     if worst.get(k) is not None})
    evidence.update(down_evidence(facts["url"], worst["error_kind"]))
    if len(failed) < len(samples):
        yield applicable_remedy(ctx.finding(
            "http.down", Severity.WARNING, f"{facts['url']}: {len(failed)} of {len(samples)} "
            f"requests failed ({worst['error']})", observed=len(failed), evidence=evidence,
            identity=("url",), cause="the service or its network drops some requests "
            "(restarts, overload, a failing backend behind a balancer)"))
        return
    yield applicable_remedy(ctx.finding(
        "http.down", Severity.CRITICAL, f"{facts['url']} is unreachable: {worst['error']}",
        evidence=evidence, identity=("url",), cause=_DOWN_CAUSES.get(worst["error_kind"])))


_DOWN_CAUSES = {
    "refused": "nothing listens on that port: the service is stopped, crashed, or bound "
               "to another address or port",
    "timeout": "the service accepts connections but does not answer in time (hung worker, "
               "full accept backlog, blocked on a dependency) or a firewall drops packets",
    "dns": "the host name does not resolve (typo, missing DNS record, resolver down)",
    "tls": "the TLS handshake failed before any certificate could be judged: the port "
           "does not speak TLS, or client and server share no protocol version or cipher",
    "reset": "the server closed the connection without a response (crash in the handler, "
             "a proxy with no healthy upstream, or a protocol mismatch)",
    "error": "something answers on that port, but not with valid HTTP/1.x (another "
             "protocol such as TLS, SSH or a database, or a broken proxy)",
}


@probe.rule("http.status", uses="request", symptoms=["http.status.error"])
def status(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Each sampled URL answers with an expected status (5xx is critical)."""
    for target in _targets(facts):
        record = target["record"]
        if target["auth"] == "required" and not record.get("credentials", True):
            continue  # no credentials configured: only the auth rule judges this target
        code, expected = record["status"], target["expect_status"]
        evidence = {"url": _where(target), "status": code, "expected": expected,
                    "redirects": record.get("redirects", []),
                    "body_excerpt": record.get("excerpt", "")}
        if code in expected:
            yield ctx.finding("http.status.error", Severity.OK, f"{_where(target)} → {code}",
                              observed=code, evidence=evidence, identity=("url",))
            continue
        severity = Severity.CRITICAL if code >= 500 else Severity.WARNING
        note = (" (redirect limit reached)" if record.get("redirect_limit") else
                f" (redirect to an unusable Location {record['redirect_invalid']!r})"
                if record.get("redirect_invalid") else "")
        yield ctx.finding("http.status.error", severity,
                          f"{_where(target)} answered {code} {record.get('reason', '')}".rstrip()
                          + f", expected {'/'.join(map(str, expected))}{note}",
                          observed=code, evidence=evidence, identity=("url",),
                          cause="the application failed while handling the request (see its "
                          "logs)" if code >= 500 else "the route, method or credentials do "
                          "not match what the service expects")


@probe.rule("http.latency", uses="request", symptoms=["http.slow"],
            thresholds={"http.slow": Threshold(2.0, 5.0, unit="s")})
def latency(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Median response time of the samples (p95 in evidence) against the threshold."""
    times = [s["response_time_ms"] / 1000 for s in _samples(facts["targets"][0])
             if s["connected"]]
    if not times:
        return
    p50 = statistics.median(times)
    p95 = sorted(times)[max(0, round(0.95 * len(times)) - 1)]
    # The median is judged: one outlier among a few samples is noise, not a slow service.
    yield ctx.judge("http.slow", round(p50, 4),
                    f"{facts['url']} p50 {p50:.3f}s, p95 {p95:.3f}s over {len(times)} requests",
                    evidence={"url": facts["url"], "p50_s": round(p50, 4), "p95_s": round(p95, 4),
                              "samples_s": [round(t, 4) for t in times[:10]]},
                    identity=("url",),
                    cause="the handler is slow or waits on something (database, cache, "
                          "another service, CPU or GC pressure)")


@probe.rule("http.tls", uses="request", symptoms=["net.tls.expiring", "net.tls.invalid"],
            thresholds={"net.tls.expiring": Threshold(14, 7, unit="days", direction="below")})
def certificate(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """The certificate of an https URL verifies and is not about to expire.

    As check_http -C and blackbox_exporter's probe_ssl_earliest_cert_expiry do. A
    certificate that fails verification (self-signed, unknown CA, another name,
    expired) is net.tls.invalid with the reason, and its expiry is still judged from
    the certificate read without verification."""
    record = facts["targets"][0]["record"]
    tls = _rejected_certificate(record)
    where = host_port(str(record.get("final_url") or record.get("url") or facts["url"]))
    if tls is None:
        if not record.get("connected") or not record.get("cert"):
            return
        tls = {"server_name": where["host"], "cert": record["cert"]}
        if facts.get("verify", True):
            tls["problems"] = []  # the request went through a verifying handshake
    host = where["host"]
    target = f"[{host}]:{where['port']}" if ":" in host else f"{host}:{where['port']}"
    yield from judge(ctx, target, tls, consequence=" (the service answers TLS, but no "
                     "HTTP request was made: status and latency are not checked)")


@probe.rule("http.health", uses="request", symptoms=["http.health.failing"])
def health(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """The health endpoint's own verdict, naming the failing sub-checks."""
    target = facts.get("health")
    if target is None:
        return
    record = target["record"]
    evidence: dict[str, Any] = {"url": _where(target)}
    if not record["connected"]:
        evidence.update(error=record["error"], status=None, reported="no answer")
        yield applicable_remedy(ctx.finding(
            "http.health.failing", Severity.CRITICAL,
            f"health endpoint {_where(target)} did not answer: {record['error']}",
            evidence=evidence, identity=("url",)))
        return
    parsed = record.get("health") or {}
    verdict = parsed.get("status", "unknown")
    if verdict == "unknown" or record["status"] >= 400:
        # A body we cannot read falls back on the status code; and an error status fails
        # whatever the body says: load balancers and orchestrators act on the code.
        verdict = "pass" if 200 <= record["status"] < 300 else "fail"
    failing = parsed.get("failing", [])
    if verdict == "pass" and failing:  # "pass" overall, yet a sub-check is not: say so
        verdict = "warn"
    evidence.update(status=record["status"], shape=parsed.get("shape"),
                    reported=parsed.get("raw_status"), failing=failing,
                    **health_names([f["name"] for f in failing], _where(target)))
    if verdict == "pass":
        yield ctx.finding("http.health.failing", Severity.OK,
                          f"{_where(target)} reports {parsed.get('raw_status') or 'healthy'}",
                          observed=record["status"], evidence=evidence, identity=("url",))
        return
    severity = Severity.WARNING if verdict == "warn" else Severity.CRITICAL
    names = f": {evidence['failing_checks']}" if failing else ""
    said = (f"answered {record['status']}" if parsed.get("shape") in ("text", "unknown", None)
            else f"answered {record['status']}, reports {parsed.get('raw_status')}"
            if record["status"] >= 400 else f"reports {parsed.get('raw_status')}")
    yield applicable_remedy(ctx.finding(
        "http.health.failing", severity, f"{_where(target)} {said}{names}",
        observed=record["status"], evidence=evidence, identity=("url",),
        cause=("the named sub-checks fail: the service is up but a dependency it checks is "
               "not" if failing else "the service declares itself unhealthy")))


@probe.rule("http.conditions", uses="request", symptoms=["http.content.mismatch"])
def conditions(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Declared conditions over status, body, response time and certificate."""
    for target in _targets(facts):
        if not target["conditions"]:
            continue
        results = [_conditions.evaluate(_conditions.parse(c), target["record"]["vars"])
                   for c in target["conditions"]]
        failed = [r for r in results if not r["ok"]]
        evidence = {"url": _where(target), "failed": failed[:10], "passed": len(results)
                    - len(failed), "failed_conditions": "; ".join(r["condition"] for r in failed)}
        if not failed:
            yield ctx.finding("http.content.mismatch", Severity.OK,
                              f"{_where(target)}: {len(results)} conditions hold",
                              observed=len(results), evidence=evidence, identity=("url",))
            continue
        shown = "; ".join(f"{r['condition']} (actual {r['actual']!r})" for r in failed[:3])
        yield ctx.finding("http.content.mismatch", Severity.CRITICAL,
                          f"{_where(target)}: {len(failed)} of {len(results)} conditions "
                          f"fail: {shown}", observed=len(failed), evidence=evidence,
                          identity=("url",), cause="the service answers, but not with what "
                          "it should (wrong version deployed, degraded dependency, changed API)")


@probe.rule("http.auth", uses="request", symptoms=["http.auth.missing"])
def auth(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Endpoints declared `auth: required` refuse requests without credentials."""
    for target in _targets(facts):
        anonymous = target.get("anonymous")
        if target["auth"] != "required" or anonymous is None or not anonymous["connected"]:
            continue
        code = anonymous["status"]
        evidence = {"url": anonymous["url"], "status": code,
                    "body_excerpt": anonymous.get("excerpt", ""),
                    "redirects": anonymous.get("redirects", [])}
        login = _sent_elsewhere(anonymous)
        if not 200 <= code < 300 or login:
            why = f"redirects them to {login}" if login else f"refuses them ({code})"
            yield ctx.finding("http.auth.missing", Severity.OK,
                              f"{anonymous['url']} {why}: anonymous requests are not served",
                              observed=code, evidence=evidence, identity=("url",))
            continue
        yield ctx.finding("http.auth.missing", Severity.CRITICAL,
                          f"{anonymous['url']} answered {code} without credentials",
                          observed=code, evidence=evidence, identity=("url",),
                          cause="the authentication middleware is not applied to this route, "
                          "or it is disabled in this environment")


def _sent_elsewhere(record: dict[str, Any]) -> str | None:
    """Where an anonymous request was redirected, when that is another page (a login
    form answering 200 is the application enforcing auth, not serving the route); a
    redirect that only adds or drops a trailing slash is the same route."""
    if not record.get("redirects"):
        return None
    start, end = urlsplit(record["url"]), urlsplit(record["final_url"])
    if (start.netloc, start.path.rstrip("/")) == (end.netloc, end.path.rstrip("/")):
        return None
    return str(record["final_url"])


@probe.rule("http.metrics", uses="request", symptoms=["http.metrics.missing"])
def metrics(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """The metrics endpoint answers 200 with valid Prometheus exposition."""
    target = facts.get("metrics")
    if target is None:
        return
    record = target["record"]
    parsed = record.get("exposition") or {}
    evidence = {"url": _where(target), "status": record.get("status"),
                "error": record.get("error") or parsed.get("error"),
                "truncated": record.get("truncated", False),
                "families": parsed.get("families", 0), "samples": parsed.get("samples", 0),
                "body_excerpt": record.get("excerpt", "")}
    if record["connected"] and record["status"] == 200 and parsed.get("families"):
        yield ctx.finding("http.metrics.missing", Severity.OK,
                          f"{_where(target)} exposes {parsed['families']} metric families",
                          observed=parsed["families"], evidence=evidence, identity=("url",))
        return
    if not record["connected"]:
        why = f"did not answer: {record['error']}"
    elif record["status"] != 200:
        why = f"answered {record['status']}"
    else:
        why = f"is not Prometheus exposition: {parsed.get('error') or 'no metric families'}"
    yield ctx.finding("http.metrics.missing", Severity.WARNING, f"{_where(target)} {why}",
                      observed=0, evidence=evidence, identity=("url",),
                      cause="the metrics endpoint is not mounted, is on another path/port, "
                            "or another handler answers it")
