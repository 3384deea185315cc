"""Turn HTTP exchanges into the facts `http` and `monitoring` rules judge.

A *target* is one URL with its expectations; fetching it yields a *record*: status,
timing, redirects followed (each hop kept), a short body excerpt, the variables the
condition language reads, and on failure the error kind (refused, timeout, dns, tls,
reset) with the phase it happened in. A TLS failure is enriched with the peer
certificate so the evidence shows what is wrong with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from pydantic import Field, field_validator

from stackmedic import redact
from stackmedic.checks import CollectContext
from stackmedic.config import ComponentBase
from stackmedic.probes._health import parse_health
from stackmedic.probes._http11 import FetchError, Pool, Response
from stackmedic.probes._net import budget as _budget
from stackmedic.probes._net import resolve
from stackmedic.probes._tls import client_context, describe, inspect

__all__ = ["HttpSettings", "Target", "down_evidence", "exchange", "fetch_target",
           "health_names", "host_port", "pool_for"]

# Requests in flight per run and per origin: enough to hide latency, not a flood, and
# a few hung origins cannot take every slot from the healthy ones.
_CONCURRENCY = 256
_PER_ORIGIN = 64
_EXCERPT = 300
_REDIRECTS = (301, 302, 303, 307, 308)
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")


class HttpSettings(ComponentBase):
    """Client settings shared by the HTTP-speaking kinds (http, prometheus, grafana)."""

    url: str = Field(..., description="base URL of the service")
    headers: dict[str, str] = Field(default_factory=dict, description="sent with each request")
    max_bytes: int = Field(1_000_000, gt=0, description="response bodies are cut here")
    follow_redirects: bool = True
    max_redirects: int = Field(5, ge=0)
    ca_file: str | None = Field(None, description="CA bundle to verify the server with")
    verify: bool = Field(True, description="verify TLS certificates")

    @field_validator("url")
    @classmethod
    def _usable_url(cls, url: str) -> str:
        """Reject at validation what no request could be made to (a typo fails there)."""
        try:
            parts = urlsplit(url)
            _ = parts.port
        except ValueError as err:
            raise ValueError(f"invalid URL {url!r}: {err}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"URL {url!r} must be http:// or https:// with a host")
        return url


@dataclass(frozen=True)
class Target:
    """One URL (a path relative to the component's URL, or absolute) to judge."""

    name: str
    path: str
    expect_status: list[int] = field(default_factory=lambda: [200])
    conditions: list[str] = field(default_factory=list)
    auth: str = "none"


def pool_for(component: HttpSettings, ctx: CollectContext) -> Pool:
    """The run's shared connection pool for this component's TLS setting."""
    key = ("http.pool", component.verify, component.ca_file)
    pool: Pool = ctx.resources.get(
        key, lambda: Pool(client_context(component.verify, component.ca_file)), Pool.aclose)
    return pool


def _is_credential(header: str) -> bool:
    return header.lower() in _CREDENTIAL_HEADERS or redact.is_secret_key(header)


async def exchange(component: HttpSettings, ctx: CollectContext, url: str, *,
                   headers: dict[str, str], keep_body: bool = False) -> dict[str, Any]:
    """GET `url` (following redirects as configured) and record what happened."""
    pool = pool_for(component, ctx)
    hops: list[dict[str, Any]] = []
    current, elapsed, stopped, invalid = url, 0.0, False, None
    try:
        while True:
            async with _slot(ctx, current):
                response = await pool.get(current, timeout=_budget(ctx),
                                          max_bytes=component.max_bytes, headers=headers)
            elapsed += response.elapsed
            location = response.headers.get("location")
            if not (component.follow_redirects and response.status in _REDIRECTS and location):
                break
            if len(hops) >= component.max_redirects:
                stopped = True
                break
            following = _followable(current, location)
            if following is None:
                invalid = location[:200]
                break
            hops.append({"url": current, "status": response.status, "location": location})
            if not _same_origin(current, following):
                # as browsers and httpx do: credentials never follow a redirect elsewhere
                headers = {k: v for k, v in headers.items() if not _is_credential(k)}
            current = following
    except FetchError as err:
        record = {"url": current, "connected": False, "error_kind": err.kind,
                  "phase": err.phase, "error": err.message,
                  "response_time_ms": round((elapsed + err.elapsed) * 1000, 3),
                  "redirects": hops, "vars": {"connected": False}}
        if err.kind == "tls":
            record["tls"] = await _tls_facts(component, ctx, current)
        return record
    record = _record(response, hops, elapsed, url, keep_body)
    record["redirect_limit"] = stopped
    if invalid is not None:
        record["redirect_invalid"] = invalid
    return record


def _followable(current: str, location: str) -> str | None:
    """The absolute URL a Location points to, or None when it cannot be requested."""
    try:
        following = urljoin(current, location.strip())
        parts = urlsplit(following)
        _ = parts.port  # ValueError for a port out of range
    except ValueError:
        return None
    return following if parts.scheme in ("http", "https") and parts.hostname else None


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    return (parts.scheme, parts.hostname or "",
            parts.port or (443 if parts.scheme == "https" else 80))


def _same_origin(current: str, following: str) -> bool:
    """Whether credentials may follow a redirect (httpx's rule): same scheme, host and
    port, or the upgrade of http://host to https://host on the default ports. A
    downgrade to plain http never keeps them: they would cross the network in clear."""
    a, b = _origin(current), _origin(following)
    return a == b or (a[1] == b[1] and a[0] == "http" and a[2] == 80
                      and b[0] == "https" and b[2] == 443)


@contextlib.asynccontextmanager
async def _slot(ctx: CollectContext, url: str) -> AsyncIterator[None]:
    """Hold a per-origin and a run-wide request slot; waiting past the deadline is a
    `queued` failure (not attempted), never mistaken for the server timing out."""
    origins: dict[str, asyncio.Semaphore] = ctx.resources.get("http.origin_limits", dict)
    origin = origins.setdefault(urlsplit(url).netloc, asyncio.Semaphore(_PER_ORIGIN))
    overall = ctx.resources.get("http.limit", lambda: asyncio.Semaphore(_CONCURRENCY))
    await _acquire(origin, ctx)
    try:
        await _acquire(overall, ctx)
        try:
            yield
        finally:
            overall.release()
    finally:
        origin.release()


async def _acquire(gate: asyncio.Semaphore, ctx: CollectContext) -> None:
    if not gate.locked():  # the common case, without wait_for's extra task per request
        await gate.acquire()
        return
    try:
        await asyncio.wait_for(gate.acquire(), _budget(ctx))
    except TimeoutError:
        raise FetchError("timeout", "queued", "not attempted: every request slot was busy "
                         "until the deadline") from None


def _record(response: Response, hops: list[dict[str, Any]], elapsed: float, url: str,
            keep_body: bool) -> dict[str, Any]:
    text = response.body.decode("utf-8", "replace")
    record: dict[str, Any] = {
        "url": url, "final_url": response.url, "connected": True, "status": response.status,
        "reason": response.reason, "response_time_ms": round(elapsed * 1000, 3),
        "content_type": response.headers.get("content-type", ""), "size": len(response.body),
        "truncated": response.truncated, "redirects": hops, "excerpt": text[:_EXCERPT],
    }
    variables: dict[str, Any] = {"connected": True, "status": response.status,
                                 "response_time_ms": record["response_time_ms"]}
    if keep_body:
        variables["body"] = text
    if response.peer_cert:
        try:
            cert = describe(response.peer_cert, datetime.now(UTC))
        except ValueError as err:  # a certificate OpenSSL accepted but we cannot read
            record["cert_error"] = f"unreadable certificate: {err}"[:200]
        else:
            record["cert"] = {k: cert[k] for k in ("subject", "issuer", "not_after",
                                                   "days_left")}
            variables["certificate_expiration_ms"] = cert["days_left"] * 86_400_000
    record["vars"] = variables
    return record


async def _tls_facts(component: HttpSettings, ctx: CollectContext, url: str) -> dict[str, Any]:
    """The peer certificate and its problems, for a request that failed in TLS."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        address = (await resolve(host, port, _budget(ctx)))[0]
        return await inspect(address, port, host, ca_file=component.ca_file,
                             timeout=_budget(ctx), now=datetime.now(UTC))
    except (OSError, TimeoutError, ValueError) as err:
        return {"error": f"{type(err).__name__}: {err}"}


def parse_exposition(text: str) -> dict[str, Any]:
    """Families and samples in Prometheus text exposition, or the parser's error."""
    from prometheus_client.parser import text_string_to_metric_families

    families = samples = 0
    try:
        for family in text_string_to_metric_families(text):
            families += 1
            samples += len(family.samples)
    except Exception as err:  # the parser raises bare ValueError/IndexError/KeyError on junk
        return {"families": families, "samples": samples,
                "error": f"{type(err).__name__}: {err}"[:200]}
    return {"families": families, "samples": samples}


async def fetch_target(component: HttpSettings, ctx: CollectContext, target: Target, *,
                       samples: int = 1, role: str | None = None) -> dict[str, Any]:
    """Fetch a target (`samples` times, one after another) and record it.

    A target declared `auth: required` is also fetched without credentials; if the
    component has no credentials at all, that anonymous fetch is its only record.
    """
    url = urljoin(component.url, target.path)
    anonymous_headers = {k: v for k, v in component.headers.items() if not _is_credential(k)}
    parts = urlsplit(url)
    anonymous_url = parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()
    credentials = len(anonymous_headers) < len(component.headers) or parts.username is not None
    keep_body = role is not None or any("[BODY]" in c for c in target.conditions)
    runs: list[dict[str, Any]] = []
    for _ in range(samples):
        record = await exchange(component, ctx, url, headers=component.headers,
                                keep_body=keep_body and not runs)
        runs.append(record)
        if not record["connected"]:
            break  # a service that did not answer once would only eat the deadline again
    first = runs[0]
    if target.auth == "required":
        first["credentials"] = credentials
    out: dict[str, Any] = {"name": target.name, "url": url,
                           "expect_status": list(target.expect_status),
                           "conditions": list(target.conditions), "auth": target.auth,
                           "record": first}
    if samples > 1:
        out["samples"] = [{k: r.get(k) for k in ("connected", "status", "response_time_ms",
                                                  "error_kind", "phase", "error", "tls")}
                          for r in runs]
    if target.auth == "required" and first["connected"]:
        out["anonymous"] = first if not credentials else await exchange(
            component, ctx, anonymous_url, headers=anonymous_headers)
    if role is not None and first["connected"]:
        body = first["vars"].pop("body", "")
        if role == "health":
            first["health"] = parse_health(body, first["content_type"])
        elif role == "metrics":  # parse whole lines only: a cut last line is not junk
            first["exposition"] = parse_exposition(
                body[:body.rfind("\n") + 1] if first["truncated"] else body)
    return out


def host_port(url: str) -> dict[str, Any]:
    """host and port of a URL, for runbook commands (`ss`, `openssl s_client`)."""
    parts = urlsplit(url)
    return {"host": parts.hostname or "",
            "port": parts.port or (443 if parts.scheme == "https" else 80)}


def down_evidence(url: str, kind: str | None) -> dict[str, Any]:
    """host and port of an unreachable URL, plus the keys only its error kind's
    `http.down` steps name: the remedy keeps the steps whose keys are present, so a
    refused port gets no DNS step, and an IP literal never gets one."""
    where = host_port(url)
    host, port = where["host"], where["port"]
    if kind in ("refused", "timeout", "reset", "error"):
        where["listen_port"] = port  # whatever the kind, `ss` shows who holds the port
    if kind in ("refused", "timeout"):
        where[f"{kind}_port"] = port
    elif kind == "tls":
        where["tls_peer"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    elif kind == "dns" and not _is_ip_literal(host):
        where["unresolved_host"] = host
    return where


def _is_ip_literal(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def health_names(failing: list[str], url: str) -> dict[str, str]:
    """The evidence that picks http.health.failing's steps: `failing_checks` when the
    health document names failing sub-checks, else `unnamed_in` (its URL): repairing
    "the dependency named by the failing sub-checks" means nothing when there are none."""
    return {"failing_checks": ", ".join(failing)} if failing else {"unnamed_in": url}


def discover_url(host: str, port: int) -> dict[str, Any]:
    """Autodiscovery spec for the HTTP-speaking kinds: a plain http:// base URL."""
    return {"url": f"http://{host}:{port}/"}
