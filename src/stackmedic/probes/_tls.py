"""TLS facts: the peer certificate and why it does (not) verify.

`inspect` handshakes once with verification on; when that fails it handshakes again
with verification off, only to read the certificate, so the evidence can show the
subject, issuer, notAfter and names of a certificate that is expired, for another
host or signed by an unknown CA. Each of those problems is stated on its own, from
the certificate itself and from OpenSSL's verify code; `judge` phrases them (and the
days left) as findings for every kind that reads a certificate (tcp, http).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from stackmedic.checks import RuleContext
from stackmedic.findings import Finding, Severity

__all__ = ["client_context", "describe", "inspect", "judge", "name_matches"]

_MAX_NAMES = 10
# OpenSSL X509_V_ERR_* codes meaning "the chain does not lead to a trusted root".
_UNTRUSTED = {2, 18, 19, 20, 21, 24, 27, 28}


def client_context(verify: bool = True, ca_file: str | None = None) -> ssl.SSLContext:
    """A client context that verifies against `ca_file` (or the system roots)."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def describe(der: bytes, now: datetime) -> dict[str, Any]:
    """Subject, issuer, validity, names and days left of a DER certificate.

    ValueError for one cryptography cannot read. Certificates that break RFC 5280 in
    ways OpenSSL accepts (a negative serial) are read without cryptography's warning,
    which would otherwise land on the doctor's stderr.
    """
    import warnings

    from cryptography import x509

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cert = x509.load_der_x509_certificate(der)
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*san.get_values_for_type(x509.DNSName),
                 *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]
    except x509.ExtensionNotFound:
        pass
    not_after = cert.not_valid_after_utc
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.isoformat().replace("+00:00", "Z"),
        "not_after": not_after.isoformat().replace("+00:00", "Z"),
        "days_left": round((not_after - now).total_seconds() / 86400, 2),
        "names": names[:_MAX_NAMES],
        "self_signed": cert.subject == cert.issuer,
    }


def name_matches(server_name: str, names: list[str]) -> bool:
    """RFC 6125 matching of a host name or IP against certificate names (one
    left-most `*` label allowed)."""
    try:
        wanted_ip = ipaddress.ip_address(server_name)
    except ValueError:
        wanted_ip = None
    host = server_name.lower().rstrip(".")
    for name in names:
        if wanted_ip is not None:
            try:
                if ipaddress.ip_address(name) == wanted_ip:
                    return True
            except ValueError:
                continue
            continue
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


async def inspect(address: str, port: int, server_name: str, *, ca_file: str | None,
                  timeout: float, now: datetime) -> dict[str, Any]:
    """Handshake with `address:port` as `server_name`; facts about the certificate.

    Raises OSError/TimeoutError when no TLS session can be made at all.
    """
    facts: dict[str, Any] = {"server_name": server_name, "verified": True, "problems": []}
    async with asyncio.timeout(timeout):  # both handshakes together, not each
        try:
            der = await _peer_cert(address, port, server_name, client_context(True, ca_file))
        except ssl.SSLCertVerificationError as err:
            facts.update(verified=False, verify_code=err.verify_code,
                         verify_message=str(err.verify_message))
            der = await _peer_cert(address, port, server_name, client_context(False))
    if der is None:
        facts["problems"] = ["no certificate"]
        return facts
    cert = describe(der, now)
    facts["cert"] = cert
    problems: list[str] = []
    if cert["days_left"] < 0:
        problems.append("expired")
    if not name_matches(server_name, cert["names"]):
        problems.append("hostname")
    if facts.get("verify_code") in _UNTRUSTED:
        problems.append("untrusted")
    if not facts["verified"] and not problems:
        problems.append("other")
    facts["problems"] = problems
    return facts


async def _peer_cert(address: str, port: int, server_name: str,
                     context: ssl.SSLContext) -> bytes | None:
    _reader, writer = await asyncio.open_connection(address, port, ssl=context,
                                                    server_hostname=server_name)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return ssl_object.getpeercert(binary_form=True) if ssl_object else None
    finally:
        writer.transport.abort()  # no close_notify round trip: we only wanted the cert


def judge(ctx: RuleContext, target: str, tls: dict[str, Any], *,
          consequence: str = "") -> Iterator[Finding]:
    """net.tls.expiring from the certificate's days left, and net.tls.invalid from the
    problems `inspect` found (skipped when `tls` has no `problems`: not verified).

    The expiry is judged even for a certificate that fails verification: an unknown CA
    does not make a certificate that expires tomorrow any less urgent. `consequence`
    ends an invalid finding's summary (what a failing handshake cost the caller).
    """
    cert = tls.get("cert", {})
    problems = tls.get("problems")
    evidence = {"target": target, "server_name": tls["server_name"], **cert,
                "names": cert.get("names", []), "problems": problems,
                "verify_message": tls.get("verify_message")}
    if "days_left" in cert:
        yield ctx.judge("net.tls.expiring", cert["days_left"],
                        f"{target}: certificate expires {cert['not_after']} "
                        f"({cert['days_left']:.1f} days left)", evidence=evidence,
                        identity=("target", "subject"),
                        cause="the certificate was not renewed (renewal job failing or absent)")
    if problems is None:
        return
    if not problems:
        yield ctx.finding("net.tls.invalid", Severity.OK, f"{target}: certificate verifies",
                          observed=0, evidence=evidence, identity=("target",))
        return
    reason = f": {tls['verify_message']}" if tls.get("verify_message") else ""
    said = {"expired": f"expired on {cert.get('not_after')}",
            "hostname": f"not valid for {tls['server_name']} "
                        f"(valid for {', '.join(cert.get('names', [])) or cert.get('subject')})",
            "untrusted": f"issued by an untrusted CA ({cert.get('issuer')}){reason}",
            "other": f"rejected{reason}",
            "no certificate": "the server sent no certificate"}
    yield ctx.finding("net.tls.invalid", Severity.CRITICAL,
                      f"{target}: certificate " + "; ".join(said[p] for p in problems)
                      + consequence, observed=len(problems), evidence=evidence,
                      identity=("target",),
                      cause="the server presents the wrong, an expired or a self-signed "
                            "certificate, or clients lack the CA that signed it")
