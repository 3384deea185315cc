"""The `http` kind against real local servers: each symptom induced for real."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stackmedic.doctor import Run
from stackmedic.errors import ConfigError
from stackmedic.findings import Finding, Severity
from stackmedic.probes import _fetch
from stackmedic.probes._http11 import FetchError, Pool
from stackmedic.probes._tls import client_context
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
    unfilled_remedies,
)

HEALTHY_METRICS = "# HELP up Whether up.\n# TYPE up gauge\nup 1\nrequests_total 7\n"


def run_one(spec: dict[str, Any], **kwargs: Any) -> Run:
    run = run_components({"api": {"kind": "http", **spec}}, **kwargs)
    assert unfilled_remedies(run.findings) == []
    return run


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
    assert down.cause is not None and "not with valid HTTP" in down.cause


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


def test_untrusted_certificate_is_invalid_with_certificate_evidence(tmp_path: Path) -> None:
    """HTTPS with a certificate from an unknown CA is net.tls.invalid whose evidence
    shows the certificate and says 'untrusted'; the service is not called down."""
    tls = TlsFiles.make(tmp_path, "127.0.0.1", trusted=False)
    with HttpServer({"/": Route(200, "ok")}, tls=tls.server_context) as server:
        run = run_one({"url": server.url("/"), "ca_file": tls.ca_file})
    invalid = only(run, "net.tls.invalid")
    assert invalid.evidence["problems"] == ["untrusted"]
    assert "127.0.0.1" in invalid.evidence["names"]
    assert not with_symptom(run.findings, "http.down")


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


# --- the HTTP/1.1 client itself, against servers that speak odd but legal (or broken) HTTP

OK_2 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def fetch(*urls: str, max_bytes: int = 1000, timeout: float = 2.0,
          headers: dict[str, str] | None = None) -> list[Any]:
    """GET each URL in turn through one pool: a Response or the FetchError raised."""
    async def go() -> list[Any]:
        pool = Pool(client_context())
        out: list[Any] = []
        try:
            for url in urls:
                try:
                    out.append(await pool.get(url, timeout=timeout, max_bytes=max_bytes,
                                              headers=headers))
                except FetchError as err:
                    out.append(err)
        finally:
            await pool.aclose()
        return out
    return asyncio.run(go())


def test_interim_1xx_responses_are_skipped_and_the_connection_stays_in_step() -> None:
    """100 Continue and 103 Early Hints precede the real answer; the next request on the
    same connection gets its own answer, not the leftover one."""
    first = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
             + OK_2)
    server = RawServer(first, b"HTTP/1.1 204 No Content\r\n\r\n", hold=True)
    with server as port:
        url = f"http://127.0.0.1:{port}/"
        one, two = fetch(url, url)
    assert (one.status, one.body, two.status, server.connections) == (200, b"ok", 204, 1)


def test_chunk_size_larger_than_the_cap_reads_only_up_to_the_cap() -> None:
    """A chunk announcing a gigabyte is read up to max_bytes + 1 and cut there, not
    buffered to its announced size (or until the timeout)."""
    payload = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40000000\r\n"
               + b"x" * 5000)
    with RawServer(payload, hold=True) as port:
        [response] = fetch(f"http://127.0.0.1:{port}/", max_bytes=1000)
    assert (response.status, len(response.body), response.truncated) == (200, 1000, True)


def test_chunked_body_with_extensions_trailers_and_bare_lf_head() -> None:
    """A head with bare LF line ends (accepted by curl and Go), chunk extensions and
    trailers still give the body; the connection is reused for the next request."""
    chunked = (b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n"
               b"5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 1\r\n\r\n")
    server = RawServer(chunked, OK_2, hold=True)
    with server as port:
        url = f"http://127.0.0.1:{port}/"
        one, two = fetch(url, url)
    assert (one.body, two.body, server.connections) == (b"hello world", b"ok", 1)


def test_http10_answer_without_keep_alive_is_not_reused() -> None:
    """An HTTP/1.0 answer is persistent only with `Connection: keep-alive`; otherwise
    the next request opens a new connection instead of waiting on a dead one."""
    server = RawServer(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", hold=True)
    with server as port:
        url = f"http://127.0.0.1:{port}/"
        results = fetch(url, url)
    assert [r.status for r in results] == [200, 200] and server.connections == 2


@pytest.mark.parametrize("payload", [
    b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 70_000,
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-Many: header\r\n" * 5000 + b"\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
], ids=["length-junk", "length-conflict", "chunk-junk", "chunk-negative", "chunk-line-huge",
        "header-huge", "headers-many", "status-4-digits"])
def test_broken_framing_is_a_malformed_response_not_a_crash(payload: bytes) -> None:
    """Junk lengths, chunk sizes and oversized heads are FetchErrors saying 'malformed',
    never another exception and never a wait for the timeout."""
    with RawServer(payload, hold=True) as port:
        [error] = fetch(f"http://127.0.0.1:{port}/", timeout=30)
    assert isinstance(error, FetchError) and error.kind == "error", error
    assert error.message.startswith("malformed response")


def test_repeated_identical_content_length_is_accepted() -> None:
    """`Content-Length: 2, 2` (a header repeated by a proxy) is one valid length."""
    with RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
                   hold=True) as port:
        [response] = fetch(f"http://127.0.0.1:{port}/")
    assert response.body == b"ok"


def test_ipv6_literal_and_unescaped_path_make_a_valid_request() -> None:
    """An IPv6 literal is bracketed in Host, and spaces and non-ASCII in the path and
    query are percent-encoded (UTF-8) so the request line stays valid."""
    try:
        server = RawServer(OK_2, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server as port:
        [response] = fetch(f"http://[::1]:{port}/a b/caf\u00e9?q=x y&ok=%2F")
    assert response.status == 200
    request_line, *headers = server.requests[0].decode("latin-1").split("\r\n")
    assert request_line == "GET /a%20b/caf%C3%A9?q=x%20y&ok=%2F HTTP/1.1"
    assert f"Host: [::1]:{port}" in headers


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/", "http://[::1/", "ftp://x/",
                                 "http://127.0.0.1:abc/"])
def test_unusable_url_is_a_request_error(url: str) -> None:
    """A URL that cannot be requested is a FetchError of phase `request`, not a crash."""
    [error] = fetch(url)
    assert isinstance(error, FetchError) and error.phase == "request"


def test_name_resolving_to_a_refusing_address_first_tries_the_next(netns: str) -> None:
    """A name whose first address (::1) refuses while the second (127.0.0.1) serves is
    reachable, as for curl: http and tcp both try the next address."""
    findings = run_in_namespace(netns, {
        "api": {"kind": "http", "url": "http://dual.stackmedic.test:$PORT/", "samples": 1},
        "svc": {"kind": "tcp", "host": "dual.stackmedic.test", "port": "$PORT"}})
    assert [f for f in findings if f["severity"] != "ok"] == []


# --- verdicts on odd but real answers --------------------------------------------------

def test_credentials_follow_redirects_only_within_the_origin() -> None:
    """Credentials are kept on the same scheme/host/port and on an http→https upgrade,
    never on a downgrade to plain http or another host or port."""
    same = _fetch._same_origin
    assert same("https://a.example/x", "https://a.example:443/y")
    assert same("http://a.example/x", "https://a.example/y")
    assert not same("https://a.example/x", "http://a.example/y")
    assert not same("http://a.example/x", "http://b.example/x")
    assert not same("http://a.example:8080/", "http://a.example:8081/")


def test_redirect_to_an_unusable_location_is_reported_not_a_crash() -> None:
    """A Location that cannot be requested stops the redirect chain: the 3xx is the
    answer, reported as an unexpected status naming the Location."""
    with HttpServer({"/": Route(302, "", {"Location": "http://[::1/broken"})}) as server:
        run = run_one({"url": server.url("/"), "samples": 1})
    status = only(run, "http.status.error")
    assert status.severity is Severity.WARNING and "unusable Location" in status.summary
    assert not with_symptom(run.findings, "stackmedic.check.failed")


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/", "ftp://127.0.0.1/",
                                 "http://[::1/", "127.0.0.1:8000"])
def test_unusable_url_fails_validation(url: str) -> None:
    """A URL no request could be made to is a config error naming `url`."""
    with pytest.raises(ConfigError, match="url"):
        run_components({"api": {"kind": "http", "url": url}})


@pytest.mark.parametrize(("key", "spec"), [
    ("health", {"health": "http://[::1/health"}),
    ("metrics", {"metrics": "ftp://127.0.0.1/metrics"}),
    ("path", {"endpoints": [{"path": "http://127.0.0.1:99999/admin"}]}),
])
def test_unusable_health_metrics_or_endpoint_path_fails_validation(
        key: str, spec: dict[str, Any]) -> None:
    """A health, metrics or endpoint path no request could be made to is a config error
    naming the key, not a failed check at run time."""
    with pytest.raises(ConfigError, match=key):
        run_components({"api": {"kind": "http", "url": "http://127.0.0.1:1/", **spec}})


def test_auth_required_redirect_to_a_login_page_is_enforced() -> None:
    """An anonymous request redirected to a login page that answers 200 is auth being
    enforced; a redirect that only adds a slash and then serves the page is not."""
    routes = {"/": Route(200, "ok"), "/admin": Route(302, "", {"Location": "/login?next=/admin"}),
              "/login": Route(200, "<form>"), "/files": Route(301, "", {"Location": "/files/"}),
              "/files/": Route(200, "secret listing")}
    with HttpServer(routes) as server:
        run = run_one({"url": server.url("/"), "samples": 1,
                       "endpoints": [{"path": "/admin", "auth": "required"},
                                     {"path": "/files", "auth": "required"}]})
    found = {f.evidence["url"]: f for f in with_symptom(run.findings, "http.auth.missing")}
    assert found[server.url("/admin")].severity is Severity.OK
    assert "/login" in found[server.url("/admin")].summary
    assert found[server.url("/files")].severity is Severity.CRITICAL


def test_health_error_status_fails_whatever_the_body_says() -> None:
    """A health endpoint answering 503 is failing even if its body says UP: balancers
    and orchestrators act on the status code."""
    finding = health_run({"status": "UP"}, 503)
    assert finding.severity is Severity.CRITICAL and "answered 503" in finding.summary


def test_health_endpoint_missing_says_the_status_not_the_error_page() -> None:
    """A health path that 404s with an HTML page is critical and says 'answered 404'."""
    with HttpServer({"/": Route(200, "ok")}) as server:
        finding = only(run_one({"url": server.url("/"), "health": "/healthz"}),
                       "http.health.failing")
    assert finding.severity is Severity.CRITICAL and finding.summary.endswith("answered 404")


def test_health_endpoint_that_does_not_answer_fills_its_remedy() -> None:
    """A health endpoint that times out is critical, and its remedy has no unfilled
    placeholder (run_one checks)."""
    with HttpServer({"/": Route(200, "ok"), "/health": Route(200, "ok", delay=5)}) as server:
        finding = only(run_one({"url": server.url("/"), "health": "/health", "samples": 1,
                                "timeout": 1.0}), "http.health.failing")
    assert finding.severity is Severity.CRITICAL and "did not answer" in finding.summary


def test_down_remedy_names_the_real_host_and_port() -> None:
    """http.down's evidence carries host and port, so its runbook commands are filled."""
    port = free_port()
    down = only(run_one({"url": f"http://127.0.0.1:{port}/"}), "http.down")
    assert (down.evidence["host"], down.evidence["port"]) == ("127.0.0.1", port)


def test_https_certificate_close_to_expiry_is_reported_without_a_condition(
        tmp_path: Path) -> None:
    """An https service whose certificate has 5 days left gives net.tls.expiring
    (critical under the 7-day default) with subject, issuer and notAfter; the remedy's
    commands are filled (run_one checks)."""
    tls = TlsFiles.make(tmp_path, "127.0.0.1", not_after=datetime.now(UTC) + timedelta(days=5))
    with HttpServer({"/": Route(200, "ok")}, tls=tls.server_context) as server:
        run = run_one({"url": server.url("/"), "ca_file": tls.ca_file, "samples": 1})
    expiring = only(run, "net.tls.expiring")
    assert expiring.severity is Severity.CRITICAL and 4 < expiring.observed < 5.1  # type: ignore[operator]
    assert expiring.evidence["target"] == f"127.0.0.1:{server.port}"
    assert expiring.evidence["issuer"] and expiring.evidence["not_after"]


def test_json_nested_past_the_stack_is_not_json_not_a_crash() -> None:
    """A health or body answer of 100,000 nested `[` (json raises RecursionError) is
    read as a non-JSON body: findings, never a failed check."""
    bomb = "[" * 100_000
    with HttpServer({"/": Route(200, bomb), "/health": Route(200, bomb)}) as server:
        run = run_one({"url": server.url("/"), "health": "/health", "samples": 1,
                       "conditions": ["[BODY].status == ok"]})
    assert not with_symptom(run.findings, "stackmedic.check.failed")
    assert only(run, "http.health.failing").severity is Severity.OK  # 200, body unreadable
    assert only(run, "http.content.mismatch").severity is Severity.CRITICAL


def test_configured_host_and_user_agent_replace_the_defaults() -> None:
    """A configured `Host` (a virtual host on an address) or `User-Agent` is sent once,
    instead of the default, never as a duplicate header; CR/LF in a value cannot split
    the request."""
    server = RawServer(OK_2)
    with server as port:
        [response] = fetch(f"http://127.0.0.1:{port}/", headers={
            "host": "api.example", "User-Agent": "probe/1", "X-Note": "a\r\nX-Evil: 1"})
    assert response.status == 200
    lines = server.requests[0].decode("latin-1").split("\r\n")[1:]
    names = [line.split(":", 1)[0].lower() for line in lines]
    assert sorted(names) == ["accept", "host", "user-agent", "x-note"]
    assert "host: api.example" in lines and "User-Agent: probe/1" in lines


def test_slow_samples_do_not_starve_the_health_check() -> None:
    """Latency samples of a slow service do not use up the time the health endpoint
    needs: it is read alongside them, so a slow service is slow, not unhealthy."""
    routes = {"/": Route(200, "ok", delay=0.8), "/health": Route(200, {"status": "UP"},
                                                               delay=2.0)}
    with HttpServer(routes) as server:
        run = run_one({"url": server.url("/"), "health": "/health", "samples": 3,
                       "timeout": 4.0}, thresholds={"http.slow": {"warning": 0.5,
                                                                  "critical": 30}})
    assert only(run, "http.health.failing").severity is Severity.OK
    assert only(run, "http.slow").severity is Severity.WARNING


def test_connection_is_never_reused_after_a_failed_exchange() -> None:
    """A response cut short (timeout mid-body) closes its connection: the next request
    opens a new one instead of reading the rest of the old answer as its own."""
    server = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", hold=True)
    with server as port:
        url = f"http://127.0.0.1:{port}/"
        results = fetch(url, url, timeout=0.5)
    assert [(r.kind, r.phase) for r in results] == [("timeout", "response")] * 2
    assert server.connections == 2


def test_https_by_host_name_verifies_that_name(tmp_path: Path) -> None:
    """https://localhost verifies a certificate for `localhost` (name sent as SNI and
    checked); a certificate for another name is net.tls.invalid saying 'hostname'."""
    good = TlsFiles.make(tmp_path, "localhost")
    with HttpServer({"/": Route(200, "ok")}, tls=good.server_context) as server:
        ok = run_one({"url": f"https://localhost:{server.port}/", "ca_file": good.ca_file,
                      "samples": 1})
    other = TlsFiles.make(tmp_path, "other.example")
    with HttpServer({"/": Route(200, "ok")}, tls=other.server_context) as server:
        wrong = run_one({"url": f"https://localhost:{server.port}/", "ca_file": other.ca_file,
                         "samples": 1})
    assert problems(ok.findings) == []
    assert only(wrong, "net.tls.invalid").evidence["problems"] == ["hostname"]
