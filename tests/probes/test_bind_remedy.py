"""The loopback-only remedy applied for real: a throwaway Redis rebound as the runbook says."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any

import psutil
import pytest

import redis
from stackmedic.findings import Severity
from stackmedic.testing import run_components, with_symptom

PASSWORD = "bind-remedy-password-0123456789"


def local_address() -> str:
    """A non-loopback IPv4 address of this host (connections to it stay on the host)."""
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return str(addr.address)
    pytest.skip("this host has no non-loopback IPv4 address")


def test_redis_bind_from_the_remedy_keeps_loopback_clients(
        redis_factory: Callable[..., Any]) -> None:
    """A Redis bound to 127.0.0.1 only, expected on this host's address: the remedy's
    `bind` line, used as the server's bind, serves that address and still loopback."""
    address = local_address()
    before = redis_factory("--requirepass", PASSWORD)
    findings = run_components({"cache": {"kind": "tcp", "host": "127.0.0.1", "port": before.port,
                                         "expect_listen_address": address}}).findings
    finding = with_symptom(findings, "net.bind.loopback_only")[0]
    assert finding.severity is Severity.CRITICAL and finding.remedy is not None
    bind = next(m.group(1) for step in finding.remedy.steps
                if (m := re.search(r"Redis `bind ([^`]+)`", step)))
    after = redis_factory("--requirepass", PASSWORD, "--bind", *bind.split())
    for host in ("127.0.0.1", address):
        with redis.Redis(host=host, port=after.port, password=PASSWORD,
                         socket_timeout=5) as client:
            assert client.ping(), host
