"""The `http` kind against HTTPS servers whose certificate does not verify: the service
answers, so the finding is net.tls.invalid with the reason, never "unreachable"; the
certificate's expiry is judged whether or not it verifies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from stackmedic.doctor import Run
from stackmedic.findings import Severity
from stackmedic.testing import problems, with_symptom
from tests.probes.servers import HttpServer, Route, TlsFiles, self_signed
from tests.probes.test_http import only, run_one


def https_run(tls: TlsFiles, url_host: str = "127.0.0.1", *, with_ca: bool) -> Run:
    with HttpServer({"/": Route(200, "ok")}, tls=tls.server_context) as server:
        spec = {"url": f"https://{url_host}:{server.port}/", "samples": 1}
        return run_one({**spec, "ca_file": tls.ca_file} if with_ca else spec)


def test_unknown_ca_is_invalid_not_down(tmp_path: Path) -> None:
    """A certificate from a CA the client was not given is net.tls.invalid naming the
    issuer and OpenSSL's reason; http.down does not claim the service unreachable."""
    run = https_run(TlsFiles.make(tmp_path, "127.0.0.1"), with_ca=False)
    invalid = only(run, "net.tls.invalid")
    assert invalid.severity is Severity.CRITICAL
    assert invalid.evidence["problems"] == ["untrusted"]
    assert invalid.evidence["verify_message"] in invalid.summary
    assert invalid.evidence["issuer"] in invalid.summary
    assert not with_symptom(run.findings, "http.down")
    assert [f.symptom for f in problems(run.findings)] == ["net.tls.invalid"]


def test_self_signed_certificate_says_so(tmp_path: Path) -> None:
    """A self-signed certificate (verify code 18) is net.tls.invalid whose summary
    carries the TLS layer's words, with subject equal to issuer in evidence."""
    with HttpServer({"/": Route(200, "ok")}, tls=self_signed(tmp_path, "localhost")) as server:
        run = run_one({"url": f"https://localhost:{server.port}/", "samples": 1})
    invalid = only(run, "net.tls.invalid")
    assert "self-signed" in invalid.summary and invalid.evidence["self_signed"] is True
    assert not with_symptom(run.findings, "http.down")


def test_hostname_mismatch_is_invalid_not_down(tmp_path: Path) -> None:
    """A trusted certificate for another name is net.tls.invalid saying which names it
    covers, and the remedy is filled (run_one checks)."""
    run = https_run(TlsFiles.make(tmp_path, "other.example"), "localhost", with_ca=True)
    invalid = only(run, "net.tls.invalid")
    assert invalid.evidence["problems"] == ["hostname"]
    assert "not valid for localhost (valid for other.example)" in invalid.summary
    assert not with_symptom(run.findings, "http.down")


def test_expiring_trusted_certificate_is_expiring_and_valid(tmp_path: Path) -> None:
    """A trusted certificate with 1 day left is net.tls.expiring (critical under the
    7-day default) while net.tls.invalid and http.down are ok; its remedy shows the
    openssl command that confirms the renewal."""
    tls = TlsFiles.make(tmp_path, "127.0.0.1", not_after=datetime.now(UTC) + timedelta(days=1))
    run = https_run(tls, with_ca=True)
    expiring = only(run, "net.tls.expiring")
    assert expiring.severity is Severity.CRITICAL and 0 < expiring.observed <= 1  # type: ignore[operator]
    assert only(run, "net.tls.invalid").severity is Severity.OK
    assert only(run, "http.down").severity is Severity.OK
    assert expiring.remedy is not None
    steps = " ".join(expiring.remedy.steps)
    assert f"openssl s_client -connect 127.0.0.1:{expiring.evidence['target'].split(':')[1]}" \
        in steps and "above" not in steps


def test_expiring_untrusted_certificate_is_invalid_and_expiring(tmp_path: Path) -> None:
    """The same certificate without its CA is net.tls.invalid, and its expiry is still
    read (from the certificate fetched without verification): net.tls.expiring too."""
    tls = TlsFiles.make(tmp_path, "127.0.0.1", not_after=datetime.now(UTC) + timedelta(days=1))
    run = https_run(tls, with_ca=False)
    assert only(run, "net.tls.invalid").evidence["problems"] == ["untrusted"]
    expiring = only(run, "net.tls.expiring")
    assert expiring.severity is Severity.CRITICAL and 0 < expiring.observed <= 1  # type: ignore[operator]
    assert not with_symptom(run.findings, "http.down")
