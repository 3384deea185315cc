"""The `tcp` kind: DNS, refused vs timed out, TLS certificates, loopback-only binds.

Everything talks to 127.0.0.1, except the DNS and bind tests, which run inside a
network namespace the test creates (a veth address 10.200.0.1 and a resolv.conf
pointing at the namespace's own loopback), so no packet leaves it.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stackmedic.doctor import Run
from stackmedic.findings import Finding, Severity
from stackmedic.testing import problems, run_components, with_symptom
from tests.fixtures.ports import free_port
from tests.probes.servers import (
    FullBacklogServer,
    HttpServer,
    TlsFiles,
    network_namespace,
    run_in_namespace,
    self_signed,
    unfilled_remedies,
)


def run_tcp(**spec: Any) -> Run:
    run = run_components({"svc": {"kind": "tcp", **spec}}, deadline=3)
    assert unfilled_remedies(run.findings) == []
    return run


def only(findings: list[Finding], symptom: str) -> Finding:
    found = with_symptom(findings, symptom)
    assert len(found) == 1, [f.summary for f in findings]
    return found[0]


def test_listening_port_is_ok() -> None:
    """A port with a listener gives ok findings with the connect time."""
    with HttpServer() as server:
        run = run_tcp(host="127.0.0.1", port=server.port)
    assert problems(run.findings) == []
    assert only(run.findings, "net.tcp.refused").unit == "ms"
    assert only(run.findings, "net.dns.failure").observed == 1


def test_closed_port_is_refused() -> None:
    """A closed port is net.tcp.refused, not a timeout."""
    run = run_tcp(host="127.0.0.1", port=free_port())
    refused = only(run.findings, "net.tcp.refused")
    assert refused.severity is Severity.CRITICAL
    assert refused.evidence["outcome"] == "refused"
    assert with_symptom(run.findings, "net.tcp.timeout") == []
    assert refused.remedy is not None and refused.remedy.steps


def test_full_accept_backlog_times_out() -> None:
    """A listener whose accept queue is full drops SYNs: net.tcp.timeout, within the
    deadline and as a finding rather than an unknown."""
    with FullBacklogServer() as port:
        run = run_tcp(host="127.0.0.1", port=port, timeout=1.0)
    timeout = only(run.findings, "net.tcp.timeout")
    assert timeout.severity is Severity.CRITICAL
    assert timeout.evidence["outcome"] == "timeout"
    assert with_symptom(run.findings, "stackmedic.check.failed") == []


def tls_run(tmp_path: Path, server_name: str | None = None, **make: Any) -> list[Finding]:
    tls = TlsFiles.make(tmp_path, *make.pop("names", ["127.0.0.1"]), **make)
    with HttpServer(tls=tls.server_context) as server:
        spec: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "tls": True,
                                "ca_file": tls.ca_file}
        if server_name:
            spec["server_name"] = server_name
        return run_tcp(**spec).findings


def test_valid_certificate_is_ok(tmp_path: Path) -> None:
    """A trusted certificate for the right name, far from expiry, is ok with days left."""
    findings = tls_run(tmp_path, not_after=datetime.now(UTC) + timedelta(days=90))
    assert problems(findings) == []
    assert 89 < only(findings, "net.tls.expiring").observed <= 90  # type: ignore[operator]


def test_certificate_expiring_in_three_days(tmp_path: Path) -> None:
    """A certificate with 3 days left is critical (default: warn 14, crit 7 days)."""
    findings = tls_run(tmp_path, not_after=datetime.now(UTC) + timedelta(days=3))
    expiring = only(findings, "net.tls.expiring")
    assert expiring.severity is Severity.CRITICAL and expiring.threshold == 7
    assert expiring.evidence["not_after"] and expiring.evidence["issuer"]
    assert only(findings, "net.tls.invalid").severity is Severity.OK


def test_expired_certificate_says_expired(tmp_path: Path) -> None:
    """An expired certificate is net.tls.invalid saying 'expired', with its notAfter."""
    findings = tls_run(tmp_path, not_after=datetime.now(UTC) - timedelta(days=2))
    invalid = only(findings, "net.tls.invalid")
    assert invalid.evidence["problems"] == ["expired"]
    assert "expired on" in invalid.summary


def test_wrong_host_name_says_hostname(tmp_path: Path) -> None:
    """A certificate for another name says which names it is valid for."""
    findings = tls_run(tmp_path, names=["other.example"])
    invalid = only(findings, "net.tls.invalid")
    assert invalid.severity is Severity.CRITICAL
    assert invalid.evidence["problems"] == ["hostname"]
    assert "other.example" in invalid.summary and invalid.evidence["names"] == ["other.example"]


def test_self_signed_certificate_says_untrusted(tmp_path: Path) -> None:
    """A self-signed certificate nobody trusts is reported untrusted, with subject and
    issuer read from the certificate despite the failed verification."""
    with HttpServer(tls=self_signed(tmp_path, "localhost")) as server:
        run = run_tcp(host="127.0.0.1", port=server.port, tls=True, server_name="localhost")
    invalid = only(run.findings, "net.tls.invalid")
    assert invalid.evidence["problems"] == ["untrusted"]
    assert invalid.evidence["subject"] == invalid.evidence["issuer"] == "CN=localhost"
    assert invalid.evidence["verify_message"]


# --- inside a network namespace ------------------------------------------------------

netns = pytest.fixture(network_namespace)


def in_netns(name: str, **spec: Any) -> list[dict[str, Any]]:
    """Findings of one tcp component run inside `name` (port: a local listener's)."""
    return run_in_namespace(name, {"svc": {"kind": "tcp", "port": "$PORT", **spec}})


def by_symptom(findings: list[dict[str, Any]], symptom: str) -> dict[str, Any]:
    found = [f for f in findings if f["symptom"] == symptom]
    assert len(found) == 1, findings
    return found[0]


def test_service_bound_to_loopback_only(netns: str) -> None:
    """Configured for this host's 10.200.0.1 while listening on 127.0.0.1 only: refused
    there, accepted on loopback → net.bind.loopback_only, and the refusal says why."""
    findings = in_netns(netns, host="10.200.0.1")
    loopback = by_symptom(findings, "net.bind.loopback_only")
    assert loopback["severity"] == "critical"
    assert loopback["evidence"]["loopback_address"] == "127.0.0.1"
    refused = by_symptom(findings, "net.tcp.refused")
    assert refused["severity"] == "critical" and "loopback" in refused["cause"]


def test_expect_listen_address_checks_the_bind_while_host_is_loopback(netns: str) -> None:
    """With host 127.0.0.1 (which accepts) and expect_listen_address 10.200.0.1 (which
    refuses), the connect is ok but the bind is reported loopback-only."""
    findings = in_netns(netns, host="127.0.0.1", expect_listen_address="10.200.0.1")
    assert by_symptom(findings, "net.tcp.refused")["severity"] == "ok"
    assert by_symptom(findings, "net.bind.loopback_only")["severity"] == "critical"


def test_name_that_does_not_resolve(netns: str) -> None:
    """A name the resolver cannot answer is net.dns.failure and nothing is connected."""
    findings = in_netns(netns, host="no-such-host.stackmedic.invalid", port=80)
    dns = by_symptom(findings, "net.dns.failure")
    assert dns["severity"] == "critical" and dns["evidence"]["error"]
    assert not [f for f in findings if f["symptom"].startswith("net.tcp.")]


def test_tls_on_a_plain_text_port_is_invalid_with_a_filled_remedy() -> None:
    """`tls: true` against a port that does not speak TLS is net.tls.invalid (handshake
    failed), and every remedy step is filled from the evidence (run_tcp checks)."""
    with HttpServer() as server:
        run = run_tcp(host="127.0.0.1", port=server.port, tls=True)
    invalid = only(run.findings, "net.tls.invalid")
    assert invalid.severity is Severity.CRITICAL and "handshake failed" in invalid.summary
    assert invalid.evidence["server_name"] == "127.0.0.1"


def test_refused_remedy_and_evidence_name_the_port() -> None:
    """net.tcp.refused evidence carries the port its runbook commands need."""
    port = free_port()
    refused = only(run_tcp(host="127.0.0.1", port=port).findings, "net.tcp.refused")
    assert refused.evidence["port"] == port


def test_certificate_breaking_rfc5280_is_read_without_warnings(tmp_path: Path) -> None:
    """A certificate with a negative serial (OpenSSL accepts it, cryptography warns
    and will refuse it) is still described, with no warning escaping to stderr."""
    import subprocess
    import warnings

    key, cert = tmp_path / "neg.key", tmp_path / "neg.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                           "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
                           "-out", str(cert), "-days", "30", "-subj", "/CN=neg.example",
                           "-set_serial", "-5"], capture_output=True)
    if made.returncode:
        pytest.skip("openssl cannot make the certificate here")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with HttpServer(tls=context) as server, warnings.catch_warnings():
        warnings.simplefilter("error")
        run = run_tcp(host="127.0.0.1", port=server.port, tls=True)
        http = run_components({"api": {"kind": "http", "url": server.url("/"),
                                        "verify": False, "samples": 1}})
    assert only(run.findings, "net.tls.invalid").evidence["subject"] == "CN=neg.example"
    assert not with_symptom(run.findings + http.findings, "stackmedic.check.failed")
