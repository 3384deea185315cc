"""Component kind `tcp`: name resolution, connect, TLS certificate, bind address.

    smtp: {kind: tcp, host: mail.internal, port: 465, tls: true}
    api:  {kind: tcp, host: 10.0.0.5, port: 8000}   # 10.0.0.5 is one of this host's

One async collector resolves the name (bounded, in a daemon thread), connects to the
first address (refused and timed out told apart), reads the certificate when `tls`
is set, and, when the target is one of this host's own non-loopback addresses and
refuses, tries 127.0.0.1/::1 on the same port: a service that answers there listens
on loopback only. Rules judge each of those facts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from stackmedic.checks import CollectContext, Facts, Probe, RuleContext
from stackmedic.config import ComponentBase
from stackmedic.findings import Finding, Severity
from stackmedic.probes._net import ResolveError, budget, classify, is_ip, resolve
from stackmedic.probes._tls import inspect, judge
from stackmedic.thresholds import Threshold

__all__ = ["TcpComponent", "probe"]

_LOOPBACKS = ("127.0.0.1", "::1")
_MAX_ADDRESSES = 4


class TcpComponent(ComponentBase):
    """A stack-file entry: `{kind: tcp, host: db.internal, port: 5432}`."""

    host: str = Field(..., description="host name or address to connect to")
    port: int = Field(..., ge=1, le=65535)
    tls: bool = Field(False, description="handshake TLS and check the certificate")
    server_name: str | None = Field(None, description="TLS name to verify (default: host)")
    ca_file: str | None = Field(None, description="CA bundle to verify the certificate with")
    expect_listen_address: str | None = Field(
        None, description="a local address the service must accept connections on")


probe = Probe("tcp", TcpComponent, description="a TCP endpoint (DNS, connect, TLS, bind)")


async def _connect(address: str, port: int, timeout: float) -> dict[str, Any]:
    """{address, outcome: ok|refused|timeout|reset|error, error, elapsed_ms}."""
    start = time.monotonic()
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port),
                                                 timeout)
        writer.close()
        outcome, error = "ok", None
    except (OSError, TimeoutError) as err:
        outcome, error = classify(err)
    return {"address": address, "outcome": outcome, "error": error,
            "elapsed_ms": round((time.monotonic() - start) * 1000, 3)}


def _join(host: str, port: int) -> str:
    """host:port as `openssl s_client -connect` and `nc` take it ([::1]:443 for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _local_addresses() -> set[str]:
    import psutil

    return {a.address.split("%", 1)[0] for addrs in psutil.net_if_addrs().values()
            for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6)}


def _local_non_loopback(address: str) -> bool:
    return is_ip(address) and not ipaddress.ip_address(address).is_loopback \
        and address in _local_addresses()


@probe.collector("connect", timeout=10.0)
async def connect(component: TcpComponent, ctx: CollectContext) -> Facts | None:
    """Resolve, connect, read the certificate, and look for a loopback-only bind."""
    facts: Facts = {"target": _join(component.host, component.port), "host": component.host,
                    "port": component.port, "server_name": component.server_name or component.host}
    try:
        addresses = await resolve(component.host, component.port, budget(ctx))
        facts["dns"] = {"ok": True, "addresses": addresses[:10]}
    except (ResolveError, TimeoutError) as err:
        facts["dns"] = {"ok": False, "error": str(err) or "the resolver did not answer in time"}
        return facts
    # Like curl, move on to the next address when one refuses or is unreachable: a
    # `localhost` that resolves to ::1 first while the service listens on 127.0.0.1 is up.
    attempts: list[dict[str, Any]] = []
    for address in addresses[:_MAX_ADDRESSES]:
        attempts.append(await _connect(address, component.port, budget(ctx)))
        if attempts[-1]["outcome"] in ("ok", "timeout"):
            break
    first = next((a for a in attempts if a["outcome"] == "ok"), attempts[-1])
    facts["connect"] = {**first, "attempts": attempts} if len(attempts) > 1 else first
    listen = component.expect_listen_address or addresses[0]
    if _local_non_loopback(listen):
        there = next((a for a in attempts if a["address"] == listen), None) or \
            await _connect(listen, component.port, budget(ctx))
        bind: Facts = {"address": listen, "outcome": there["outcome"], "loopback": {}}
        if there["outcome"] == "refused":
            for loopback in _LOOPBACKS:
                bind["loopback"][loopback] = (await _connect(loopback, component.port,
                                                             budget(ctx)))["outcome"]
        facts["bind"] = bind
    if component.tls and first["outcome"] == "ok":
        try:
            facts["tls"] = await inspect(first["address"], component.port,
                                         component.server_name or component.host,
                                         ca_file=component.ca_file, timeout=budget(ctx),
                                         now=datetime.now(UTC))
        except (OSError, TimeoutError) as err:
            facts["tls"] = {"error": classify(err)[1]}
        except ValueError as err:  # a certificate OpenSSL accepted but we cannot read
            facts["tls"] = {"error": f"unreadable certificate: {err}"[:200]}
    return facts


@probe.rule("tcp.dns", uses="connect", symptoms=["net.dns.failure"])
def dns(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """The host name resolves."""
    result = facts["dns"]
    evidence = {"host": facts["host"], **result}
    if result["ok"]:
        yield ctx.finding("net.dns.failure", Severity.OK,
                          f"{facts['host']} resolves to {', '.join(result['addresses'][:3])}",
                          observed=len(result["addresses"]), evidence=evidence,
                          identity=("host",))
        return
    yield ctx.finding("net.dns.failure", Severity.CRITICAL,
                      f"{facts['host']} does not resolve: {result['error']}", observed=0,
                      evidence=evidence, identity=("host",),
                      cause="a typo in the host name, a missing DNS record, or a resolver "
                            "that is down or unreachable")


@probe.rule("tcp.connect", uses="connect", symptoms=["net.tcp.refused", "net.tcp.timeout"])
def connected(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """A TCP connection can be made; refused and timed out are told apart."""
    result = facts.get("connect")
    if result is None:
        return
    evidence = {"target": facts["target"], "port": facts["port"], **result}
    outcome, target = result["outcome"], facts["target"]
    if outcome == "ok":
        for symptom in ("net.tcp.refused", "net.tcp.timeout"):
            yield ctx.finding(symptom, Severity.OK, f"{target} accepts connections "
                              f"({result['elapsed_ms']:.1f} ms)", observed=result["elapsed_ms"],
                              unit="ms", evidence=evidence, identity=("target",))
        return
    if outcome in ("refused", "reset"):
        loopback_only = any(v == "ok" for v in facts.get("bind", {}).get("loopback", {}).values())
        yield ctx.finding(
            "net.tcp.refused", Severity.CRITICAL, f"{target}: connection refused",
            evidence=evidence, identity=("target",),
            cause="the service listens only on loopback, not on this address"
            if loopback_only else "nothing listens on that port: the service is stopped, "
            "crashed, or bound to another address or port")
        return
    yield ctx.finding(
        "net.tcp.timeout", Severity.CRITICAL, f"{target}: connect {result['error']}",
        evidence=evidence, identity=("target",),
        cause="packets are dropped on the way (firewall, security group, wrong route) or the "
              "listener's accept queue is full because the service stopped accepting")


@probe.rule("tcp.tls", uses="connect", symptoms=["net.tls.expiring", "net.tls.invalid"],
            thresholds={"net.tls.expiring": Threshold(14, 7, unit="days", direction="below")})
def certificate(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """The certificate verifies (expired, wrong name, untrusted said apart) and is not
    about to expire."""
    tls = facts.get("tls")
    if tls is None:
        return
    target = facts["target"]
    if "error" in tls:
        yield ctx.finding("net.tls.invalid", Severity.CRITICAL,
                          f"{target}: TLS handshake failed: {tls['error']}",
                          evidence={"target": target, "error": tls["error"],
                                    "server_name": facts.get("server_name") or facts["host"],
                                    "verify_message": tls["error"]},
                          identity=("target",), cause="the port does not speak TLS, or "
                          "client and server share no protocol version or cipher")
        return
    yield from judge(ctx, target, tls)


@probe.rule("tcp.bind", uses="connect", symptoms=["net.bind.loopback_only"])
def bind(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """A service meant to be reachable on a local address does not listen only on
    loopback."""
    result = facts.get("bind")
    if result is None:
        return
    where = f"{result['address']}:{facts['port']}"
    accepted = [a for a, outcome in result["loopback"].items() if outcome == "ok"]
    evidence = {"address": result["address"], "port": facts["port"],
                "outcome": result["outcome"], "loopback": result["loopback"],
                "loopback_address": accepted[0] if accepted else None}
    if not accepted:
        yield ctx.finding("net.bind.loopback_only", Severity.OK,
                          f"{where}: {result['outcome']}, not a loopback-only bind",
                          evidence=evidence, identity=("address", "port"))
        return
    yield ctx.finding("net.bind.loopback_only", Severity.CRITICAL,
                      f"{where} refuses connections but {accepted[0]} port {facts['port']} "
                      "accepts: the service listens on loopback only", evidence=evidence,
                      identity=("address", "port"),
                      cause="the service binds 127.0.0.1/localhost (a default of many "
                            "servers) instead of this address or 0.0.0.0")
