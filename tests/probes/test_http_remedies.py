"""http.down and http.health.failing remedies fit what was measured: the error kind,
and whether the health document names failing sub-checks."""

from __future__ import annotations

from typing import Any

import pytest

from stackmedic.findings import Finding
from tests.fixtures.ports import free_port
from tests.probes.servers import SilentServer, network_namespace, run_in_namespace
from tests.probes.test_http import health_run, only, run_one

netns = pytest.fixture(network_namespace)


def steps_of(finding: Finding) -> str:
    assert finding.remedy is not None
    return "\n".join(finding.remedy.steps)


def test_refused_port_gets_the_listener_and_restart_steps_only() -> None:
    """A closed port on an IP literal: `ss` for that port and a start/restart step, no
    timeout, DNS or TLS step and no unfilled SERVICE."""
    port = free_port()
    steps = steps_of(only(run_one({"url": f"http://127.0.0.1:{port}/"}), "http.down"))
    assert f"ss -ltnp 'sport = :{port}'" in steps and "start or restart" in steps
    for absent in ("getent", "iptables", "py-spy", "openssl", "SERVICE"):
        assert absent not in steps, absent


def test_timeout_gets_the_overload_and_firewall_steps_only() -> None:
    """A server that accepts and never answers: the accept queue, the workers and the
    firewall for that port, nothing about starting it or about DNS."""
    with SilentServer() as port:
        down = only(run_one({"url": f"http://127.0.0.1:{port}/"}, deadline=1.5), "http.down")
    steps = steps_of(down)
    assert f"sport = :{port}" in steps and f"grep -w -- {port}" in steps and "py-spy" in steps
    assert "getent" not in steps and "start or restart" not in steps


def test_unresolved_name_gets_the_resolution_steps_only(netns: str) -> None:
    """A host name that does not resolve: getent/resolvectl for it, no `ss` step."""
    findings = run_in_namespace(netns, {"api": {
        "kind": "http", "url": "http://no-such-host.stackmedic.invalid:$PORT/"}})
    [down] = [f for f in findings if f["symptom"] == "http.down"]
    steps = "\n".join(down["remedy"]["steps"])
    assert "getent hosts no-such-host.stackmedic.invalid" in steps
    assert "ss -ltnp" not in steps and "start or restart" not in steps


@pytest.mark.parametrize(("body", "named"), [
    ({"status": "fail"}, None),
    ({"status": "fail", "checks": {"db:ping": [{"status": "fail"}]}}, "db:ping"),
])
def test_health_remedy_names_the_failing_sub_checks_or_says_there_are_none(
        body: dict[str, Any], named: str | None) -> None:
    """A failing health document without sub-checks gets a step to read it, never
    'named by the failing sub-checks (`-`)'; with one, the step names it."""
    finding = health_run(body, 503)
    steps = steps_of(finding)
    assert "`-`" not in steps and "(none" not in steps
    if named is None:
        assert "names no failing sub-check" in steps and finding.evidence["url"] in steps
        assert "the failing sub-checks name" not in steps
    else:
        assert f"the failing sub-checks name (`{named}`)" in steps
