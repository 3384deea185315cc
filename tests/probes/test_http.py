"""The `http` kind against real local servers: each symptom induced for real."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stackmedic.doctor import Run
from stackmedic.findings import Finding, Severity
from stackmedic.probes import _fetch
from stackmedic.testing import problems, run_components, with_symptom
from tests.fixtures.ports import free_port
from tests.probes.servers import (
    HttpServer,
    RawServer,
    Route,
    SilentServer,
    TlsFiles,
    network_namespace,
    run_in_namespace,
)

HEALTHY_METRICS = "# HELP up Whether up.\n# TYPE up gauge\nup 1\nrequests_total 7\n"


def run_one(spec: dict[str, Any], **kwargs: Any) -> Run:
    return run_components({"api": {"kind": "http", **spec}}, **kwargs)


def only(run: Run, symptom: str) -> Finding:
    found = with_symptom(run.findings, symptom)
    assert len(found) == 1, [f.summary for f in run.findings]
    return found[0]


def test_healthy_service_has_no_problems() -> None:
    """A service that answers, is healthy, meets its conditions and guards its admin
    route yields only ok findings, each with its measured value."""
    routes = {
        "/": Route(200, {"data": {"status": "ok"}, "items": [1, 2]}),
        "/health": Route(200, {"status": "pass", "checks": {"db:ping": [{"status": "pass"}]}},
                         headers={"Content-Type": "application/health+json"}),
        "/metrics": Route(200, HEALTHY_METRICS),
        "/admin": Route(200, "ok", require_auth="Bearer s3cr3t-token"),
    }
    with HttpServer(routes) as server:
        run = run_one({"url": server.url("/"), "health": "/health", "metrics": "/metrics",
                       "conditions": ["[STATUS] == 200", '[BODY].data.status == "ok"',
                                      "len([BODY].items) > 0", "[RESPONSE_TIME] < 60000"],
                       "endpoints": [{"path": "/admin", "auth": "required"}]})
    assert problems(run.findings) == []
    assert {f.symptom for f in run.findings} == {
        "http.down", "http.status.error", "http.slow", "http.health.failing",
        "http.content.mismatch", "http.auth.missing", "http.metrics.missing"}
    assert all(f.observed is not None for f in run.findings)
    assert only(run, "http.metrics.missing").observed == 2


def test_closed_port_is_down_refused() -> None:
    """A port nobody listens on gives a critical http.down saying 'refused'."""
    run = run_one({"url": f"http://127.0.0.1:{free_port()}/"})
    down = only(run, "http.down")
    assert down.severity is Severity.CRITICAL
    assert down.evidence["error_kind"] == "refused"
    assert "refused" in down.summary
    assert down.remedy is not None and down.remedy.steps
    assert with_symptom(run.findings, "http.status.error") == []


def test_server_that_never_answers_is_down_timeout_within_the_deadline() -> None:
    """A server that accepts and never answers is reported as http.down (timeout),
    not as an unknown check, before the run's deadline."""
    with SilentServer() as port:
        run = run_one({"url": f"http://127.0.0.1:{port}/"}, deadline=1.5)
    down = only(run, "http.down")
    assert down.severity is Severity.CRITICAL
    assert (down.evidence["error_kind"], down.evidence["phase"]) == ("timeout", "response")
    assert not [f for f in run.findings if f.symptom == "stackmedic.check.failed"]


def test_request_starved_of_a_slot_is_unknown_not_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that never got one of stackmedic's own slots before its deadline is an
    unknown 'not checked', not a service that timed out."""
    monkeypatch.setattr(_fetch, "_PER_ORIGIN", 1)
    with SilentServer() as port:
        url = f"http://127.0.0.1:{port}/"
        run = run_components({"hung": {"kind": "http", "url": url, "timeout": 2.0},
                              "starved": {"kind": "http", "url": url, "timeout": 1.0}},
                             deadline=4)
    severities = {f.component: (f.severity, f.evidence["phase"])
                  for f in with_symptom(run.findings, "http.down")}
    assert severities == {"hung": (Severity.CRITICAL, "response"),
                          "starved": (Severity.UNKNOWN, "queued")}


netns = pytest.fixture(network_namespace)


def test_name_that_does_not_resolve_is_down_dns(netns: str) -> None:
    """A URL whose host name does not resolve is http.down of kind dns (run inside a
    namespace whose resolver is its own loopback)."""
    findings = run_in_namespace(netns, {"api": {
        "kind": "http", "url": "http://no-such-host.stackmedic.invalid:$PORT/"}})
    [down] = [f for f in findings if f["symptom"] == "http.down"]
    assert down["severity"] == "critical" and down["evidence"]["error_kind"] == "dns"


def test_junk_instead_of_http_is_down_without_traceback() -> None:
    """A server that answers bytes that are not HTTP is down with a readable reason."""
    with RawServer(b"SSH-2.0-OpenSSH_9.6\r\nnot http at all\r\n\r\n") as port:
        run = run_one({"url": f"http://127.0.0.1:{port}/"})
    down = only(run, "http.down")
    assert down.severity is Severity.CRITICAL
    assert "not an HTTP/1.x status line" in down.evidence["error"]


def test_server_error_and_unexpected_status() -> None:
    """A 5xx is a critical http.status.error, an unexpected 404 a warning."""
    with HttpServer({"/": Route(503, "db gone")}) as server:
        run = run_one({"url": server.url("/"), "endpoints": [{"path": "/nope"}]})
    found = {f.evidence["url"]: f for f in with_symptom(run.findings, "http.status.error")}
    assert found[server.url("/")].severity is Severity.CRITICAL
    assert found[server.url("/")].evidence["body_excerpt"] == "db gone"
    assert found[server.url("/nope")].severity is Severity.WARNING
    assert found[server.url("/nope")].observed == 404


def test_slow_responses_against_lowered_threshold() -> None:
    """Responses slower than the (lowered) threshold give http.slow with p50/p95."""
    with HttpServer({"/": Route(200, "ok", delay=0.4)}) as server:
        run = run_one({"url": server.url("/"), "samples": 2},
                      thresholds={"http.slow": {"warning": 0.2, "critical": 30}})
    slow = only(run, "http.slow")
    assert slow.severity is Severity.WARNING
    assert slow.evidence["p50_s"] >= 0.4 and len(slow.evidence["samples_s"]) == 2


def health_run(body: dict[str, Any], status: int = 200, content_type: str | None = None) -> Finding:
    headers = {"Content-Type": content_type} if content_type else {}
    with HttpServer({"/": Route(200, "ok"), "/health": Route(status, body, headers)}) as server:
        return only(run_one({"url": server.url("/"), "health": "/health"}),
                    "http.health.failing")


def test_ietf_health_failing_names_its_checks() -> None:
    """An application/health+json 'fail' names the failing `component:measurement` checks."""
    finding = health_run({"status": "fail", "checks": {
        "db:connections": [{"componentId": "primary", "status": "fail", "output": "too many"}],
        "cache:ping": [{"status": "pass"}]}}, 503, "application/health+json")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["shape"] == "ietf"
    assert finding.evidence["failing_checks"] == "db:connections[primary]"
    assert "db:connections" in finding.summary and "cache" not in finding.summary


def test_spring_health_down_names_nested_components() -> None:
    """A Spring actuator DOWN names the DOWN components, nested ones by their path."""
    finding = health_run({"status": "DOWN", "components": {
        "db": {"status": "DOWN", "details": {"error": "Connection refused"}},
        "diskSpace": {"status": "UP"},
        "redis": {"status": "UP", "components": {"replica": {"status": "OUT_OF_SERVICE"}}}}})
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["shape"] == "spring"
    assert [f["name"] for f in finding.evidence["failing"]] == ["db", "redis.replica"]
    assert "Connection refused" in finding.evidence["failing"][0]["output"]


def test_plain_degraded_health_is_a_warning() -> None:
    """A plain {"status": "degraded"} body is a warning naming its failing checks."""
    finding = health_run({"status": "degraded", "checks": {"queue": "unhealthy", "db": "ok"}})
    assert finding.severity is Severity.WARNING
    assert finding.evidence["failing_checks"] == "queue"


def test_passing_health_with_a_warning_sub_check_is_a_warning() -> None:
    """An overall "pass" whose sub-checks include a "warn" is a warning naming it."""
    finding = health_run({"status": "pass", "checks": {
        "disk:utilization": [{"status": "warn", "observedValue": 91}],
        "db:ping": [{"status": "pass"}]}}, 200, "application/health+json")
    assert finding.severity is Severity.WARNING
    assert finding.evidence["failing_checks"] == "disk:utilization"


def test_auth_required_endpoint_answering_without_credentials() -> None:
    """An `auth: required` endpoint answering 2xx anonymously is critical; one that
    answers 401 anonymously is ok, and credentials are never sent on the anonymous try."""
    token = "Bearer abcdef-123456"
    routes = {"/": Route(200, "ok"), "/open": Route(200, "all data"),
              "/guarded": Route(200, "ok", require_auth=token)}
    with HttpServer(routes) as server:
        run = run_one({"url": server.url("/"), "headers": {"Authorization": token},
                       "endpoints": [{"path": "/open", "auth": "required"},
                                     {"path": "/guarded", "auth": "required"}]})
        anonymous = [h for p, h in server.hits if p == "/guarded" and "Authorization" not in h]
    found = {f.evidence["url"]: f for f in with_symptom(run.findings, "http.auth.missing")}
    assert found[server.url("/open")].severity is Severity.CRITICAL
    assert found[server.url("/guarded")].severity is Severity.OK
    assert found[server.url("/guarded")].observed == 401
    assert len(anonymous) == 1
    assert problems(with_symptom(run.findings, "http.status.error")) == []


def test_metrics_absent_or_garbage() -> None:
    """A /metrics that 404s or is not Prometheus exposition is http.metrics.missing."""
    with HttpServer({"/": Route(200, "ok"), "/bad": Route(200, "<html>hello</html>")}) as server:
        absent = only(run_one({"url": server.url("/"), "metrics": "/metrics"}),
                      "http.metrics.missing")
        garbage = only(run_one({"url": server.url("/"), "metrics": "/bad"}),
                       "http.metrics.missing")
    assert absent.severity is Severity.WARNING and absent.evidence["status"] == 404
    assert garbage.severity is Severity.WARNING and garbage.evidence["error"]


def test_failing_conditions_name_the_actual_values() -> None:
    """Conditions that do not hold are listed with the value actually seen."""
    with HttpServer({"/": Route(200, {"data": {"status": "degraded"}, "items": []})}) as server:
        run = run_one({"url": server.url("/"), "conditions": [
            "[STATUS] == 200", '[BODY].data.status == "ok"', "len([BODY].items) > 0"]})
    mismatch = only(run, "http.content.mismatch")
    assert mismatch.severity is Severity.CRITICAL
    assert [(f["condition"], f["actual"]) for f in mismatch.evidence["failed"]] == [
        ('[BODY].data.status == "ok"', "degraded"), ("len([BODY].items) > 0", 0)]


def test_untrusted_certificate_is_down_with_certificate_evidence(tmp_path: Path) -> None:
    """HTTPS with a certificate from an unknown CA is http.down (tls) whose evidence
    shows the certificate and says 'untrusted'."""
    tls = TlsFiles.make(tmp_path, "127.0.0.1", trusted=False)
    with HttpServer({"/": Route(200, "ok")}, tls=tls.server_context) as server:
        run = run_one({"url": server.url("/"), "ca_file": tls.ca_file})
    down = only(run, "http.down")
    assert down.evidence["error_kind"] == "tls"
    assert down.evidence["tls"]["problems"] == ["untrusted"]
    assert "127.0.0.1" in down.evidence["tls"]["cert"]["names"]


def test_certificate_expiration_condition(tmp_path: Path) -> None:
    """[CERTIFICATE_EXPIRATION] compares the days left on a trusted certificate."""
    tls = TlsFiles.make(tmp_path, "127.0.0.1", not_after=datetime.now(UTC) + timedelta(days=5))
    with HttpServer({"/": Route(200, "ok")}, tls=tls.server_context) as server:
        run = run_one({"url": server.url("/"), "ca_file": tls.ca_file,
                       "conditions": ["[CERTIFICATE_EXPIRATION] > 240h",
                                      "[CERTIFICATE_EXPIRATION] > 72h"]})
    assert only(run, "http.down").severity is Severity.OK
    mismatch = only(run, "http.content.mismatch")
    assert [f["condition"] for f in mismatch.evidence["failed"]] == [
        "[CERTIFICATE_EXPIRATION] > 240h"]


def test_redirects_are_followed_and_recorded_up_to_the_limit() -> None:
    """Redirects are followed with each hop recorded; a loop stops at max_redirects
    and is reported as an unexpected 3xx."""
    routes = {"/old": Route(301, "", {"Location": "/new"}), "/new": Route(200, "here"),
              "/loop": Route(302, "", {"Location": "/loop"})}
    with HttpServer(routes) as server:
        ok = run_one({"url": server.url("/old")})
        loop = run_one({"url": server.url("/loop"), "max_redirects": 3})
    status = only(ok, "http.status.error")
    assert status.severity is Severity.OK
    assert status.evidence["redirects"] == [
        {"url": server.url("/old"), "status": 301, "location": "/new"}]
    looped = only(loop, "http.status.error")
    assert looped.severity is Severity.WARNING and looped.observed == 302
    assert len(looped.evidence["redirects"]) == 3 and "redirect limit" in looped.summary


def test_single_sample_is_still_timed() -> None:
    """With samples: 1 the one request is still judged for latency."""
    with HttpServer({"/": Route(200, "ok")}) as server:
        run = run_one({"url": server.url("/"), "samples": 1})
    assert len(only(run, "http.slow").evidence["samples_s"]) == 1


def test_credentials_in_the_url_are_sent_and_withheld_on_the_anonymous_try() -> None:
    """user:password in the URL is sent as Basic auth, and stripped for the
    `auth: required` anonymous request."""
    basic = "Basic YWRtaW46czNjcjN0LXB3"  # admin:s3cr3t-pw
    with HttpServer({"/": Route(200, "ok", require_auth=basic)}) as server:
        url = server.url("/").replace("http://", "http://admin:s3cr3t-pw@")
        run = run_one({"url": url, "auth": "required", "samples": 1})
    assert problems(run.findings) == []
    assert only(run, "http.auth.missing").observed == 401
    assert only(run, "http.status.error").observed == 200


def test_credentials_do_not_follow_a_redirect_to_another_origin() -> None:
    """A redirect to another host:port is followed without the Authorization header."""
    with HttpServer({"/": Route(200, "ok")}) as other:
        with HttpServer({"/": Route(302, "", {"Location": other.url("/")})}) as first:
            run = run_one({"url": first.url("/"), "samples": 1,
                           "headers": {"Authorization": "Bearer abcdef-123456"}})
        assert [h.get("Authorization") for _, h in first.hits] == ["Bearer abcdef-123456"]
        assert [h.get("Authorization") for _, h in other.hits] == [None]
    assert only(run, "http.status.error").evidence["redirects"][0]["status"] == 302


def test_response_body_is_capped() -> None:
    """A body larger than max_bytes is cut there and marked truncated."""
    with HttpServer({"/": Route(200, "x" * 100_000)}) as server:
        run = run_one({"url": server.url("/"), "max_bytes": 1000, "samples": 1})
    record = run.facts["api"]["request"]["targets"][0]["record"]
    assert record["truncated"] is True and record["size"] == 1000
    assert problems(run.findings) == []
