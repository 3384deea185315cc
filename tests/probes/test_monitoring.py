"""The `prometheus` and `grafana` kinds against local servers speaking their API shapes."""

from __future__ import annotations

from typing import Any

from stackmedic.checks import get_probe
from stackmedic.findings import Severity
from stackmedic.testing import problems, run_components, with_symptom
from tests.fixtures.ports import free_port
from tests.probes.servers import HttpServer, Route


def target(job: str, instance: str, health: str, error: str = "") -> dict[str, Any]:
    return {"labels": {"job": job, "instance": instance}, "scrapePool": job,
            "scrapeUrl": f"http://{instance}/metrics", "health": health, "lastError": error,
            "lastScrape": "2026-11-22T05:00:00.000Z"}


def prometheus_routes(*targets: dict[str, Any], healthy: int = 200) -> dict[str, Route]:
    return {"/-/healthy": Route(healthy, "Prometheus Server is Healthy.\n"),
            "/api/v1/targets": Route(200, {"status": "success", "data": {
                "activeTargets": list(targets), "droppedTargets": []}})}


def test_prometheus_with_all_targets_up_is_ok() -> None:
    """A healthy Prometheus whose targets are all up yields ok findings only."""
    routes = prometheus_routes(target("api", "127.0.0.1:8000", "up"))
    with HttpServer(routes) as server:
        run = run_components({"prom": {"kind": "prometheus", "url": server.url("")}})
    assert problems(run.findings) == []
    assert {f.symptom for f in run.findings} == {"monitoring.service.down",
                                                 "monitoring.target.down"}


def test_prometheus_down_targets_are_named_with_their_last_error() -> None:
    """Each down active target is a finding with job, instance, scrape URL and error."""
    routes = prometheus_routes(
        target("api", "127.0.0.1:8000", "up"),
        target("node", "127.0.0.1:9100", "down", 'Get "http://127.0.0.1:9100/metrics": '
               "dial tcp 127.0.0.1:9100: connect: connection refused"),
        target("db", "127.0.0.1:9187", "down", "context deadline exceeded"))
    with HttpServer(routes) as server:
        run = run_components({"prom": {"kind": "prometheus", "url": server.url("/")}})
    down = {f.evidence["job"]: f for f in with_symptom(run.findings, "monitoring.target.down")}
    assert set(down) == {"node", "db"}
    assert down["node"].severity is Severity.CRITICAL
    assert down["node"].evidence["scrape_url"] == "http://127.0.0.1:9100/metrics"
    assert "connection refused" in down["node"].summary
    assert down["node"].fingerprint != down["db"].fingerprint
    assert down["db"].remedy is not None and "db" in down["db"].remedy.steps[1]


def test_prometheus_unhealthy_and_unreachable() -> None:
    """A failing /-/healthy and a closed port are both monitoring.service.down."""
    with HttpServer(prometheus_routes(healthy=503)) as server:
        unhealthy = run_components({"prom": {"kind": "prometheus", "url": server.url("")}})
    closed = run_components({"prom": {"kind": "prometheus",
                                      "url": f"http://127.0.0.1:{free_port()}"}})
    for run, words in ((unhealthy, "answered 503"), (closed, "connection refused")):
        [finding] = with_symptom(run.findings, "monitoring.service.down")
        assert finding.severity is Severity.CRITICAL and words in finding.summary


def test_odd_targets_answer_never_breaks_the_check() -> None:
    """Malformed target entries from the API still give findings, never a crash."""
    routes = prometheus_routes()
    routes["/api/v1/targets"] = Route(200, {"data": {"activeTargets": [
        {"labels": ["not", "a", "map"], "health": "down", "lastError": None}, "junk", 7]}})
    with HttpServer(routes) as server:
        run = run_components({"prom": {"kind": "prometheus", "url": server.url("")}})
    [down] = with_symptom(run.findings, "monitoring.target.down")
    assert down.severity is Severity.CRITICAL and down.evidence["job"] == "?"
    assert not with_symptom(run.findings, "stackmedic.check.failed")


def test_grafana_health_and_its_database() -> None:
    """Grafana is ok with database ok, and down when /api/health reports it failing."""
    good = {"/api/health": Route(200, {"database": "ok", "version": "11.3.0"})}
    bad = {"/api/health": Route(503, {"database": "failing", "version": "11.3.0"})}
    findings = {}
    for name, routes in (("good", good), ("bad", bad)):
        with HttpServer(routes) as server:
            run = run_components({"g": {"kind": "grafana", "url": server.url("")}})
        [findings[name]] = with_symptom(run.findings, "monitoring.service.down")
    assert findings["good"].severity is Severity.OK
    assert findings["bad"].severity is Severity.CRITICAL
    assert "database 'failing'" in findings["bad"].summary


def test_default_ports_for_autodiscovery() -> None:
    """The kinds declare the standard ports autodiscovery probes."""
    assert get_probe("prometheus").default_ports == (9090,)
    assert get_probe("grafana").default_ports == (3000,)
    assert get_probe("http").default_ports == (8000, 8080)


def test_targets_api_that_cannot_be_read_is_unknown_not_silent() -> None:
    """A healthy Prometheus whose targets API refuses (401 behind a proxy) gives an
    unknown monitoring.target.down saying why, never an all-clear by omission."""
    routes = prometheus_routes()
    routes["/api/v1/targets"] = Route(401, "unauthorized")
    with HttpServer(routes) as server:
        run = run_components({"prom": {"kind": "prometheus", "url": server.url("")}})
    [targets] = with_symptom(run.findings, "monitoring.target.down")
    assert targets.severity is Severity.UNKNOWN and "status 401" in targets.summary


def test_targets_not_scraped_yet_are_not_down() -> None:
    """A target Prometheus has not scraped yet (health "unknown") is not a down target."""
    routes = prometheus_routes(target("api", "127.0.0.1:8000", "up"),
                               target("new", "127.0.0.1:9200", "unknown"))
    with HttpServer(routes) as server:
        run = run_components({"prom": {"kind": "prometheus", "url": server.url("")}})
    [targets] = with_symptom(run.findings, "monitoring.target.down")
    assert targets.severity is Severity.OK and "1 not scraped yet" in targets.summary


def test_down_target_remedy_names_this_prometheus() -> None:
    """The reload/inspect commands of a down target's remedy use this Prometheus URL."""
    routes = prometheus_routes(target("node", "127.0.0.1:9100", "down", "refused"))
    with HttpServer(routes) as server:
        run = run_components({"prom": {"kind": "prometheus", "url": server.url("/")}})
    [down] = with_symptom(run.findings, "monitoring.target.down")
    assert down.remedy is not None
    assert any(f"{server.url('')}/-/reload" in step for step in down.remedy.steps)


def test_json_nested_past_the_stack_never_breaks_the_check() -> None:
    """A targets answer of nested `[` past the stack is unreadable, not a crash."""
    routes = prometheus_routes()
    routes["/api/v1/targets"] = Route(200, "[" * 100_000)
    with HttpServer(routes) as server:
        run = run_components({"prom": {"kind": "prometheus", "url": server.url("")}})
    assert not with_symptom(run.findings, "stackmedic.check.failed")
    [targets] = with_symptom(run.findings, "monitoring.target.down")
    assert targets.severity is Severity.UNKNOWN
