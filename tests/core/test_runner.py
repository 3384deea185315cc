"""The runner: concurrency, deadlines, isolation of failures, correlation."""

import json
import time
from pathlib import Path

import pytest

from stackmedic.cli import main
from stackmedic.findings import Severity
from stackmedic.testing import evaluate_facts, run_components, with_symptom


def test_slow_collector_becomes_unknown_within_the_deadline() -> None:
    """A collector that outlives the deadline yields an unknown finding; the run does
    not wait for it (it would sleep a minute)."""
    start = time.monotonic()
    run = run_components({"slow": {"kind": "fake", "sleep": 60},
                          "fast": {"kind": "fake", "value": 0.5}}, deadline=1.5)
    assert time.monotonic() - start < 30  # not waiting for the 60 s collector
    [failed] = with_symptom(run.findings, "stackmedic.check.failed")
    assert failed.component == "slow" and failed.severity is Severity.UNKNOWN
    assert "timed out" in failed.summary
    assert run.exit_code == 3
    assert with_symptom(run.findings, "host.disk.full")[0].severity is Severity.OK


def test_crashing_collector_is_isolated() -> None:
    """One probe raising becomes an unknown finding naming the error; others still run."""
    run = run_components({"bad": {"kind": "fake", "crash": True},
                          "good": {"kind": "fake", "value": 0.99}})
    [failed] = with_symptom(run.findings, "stackmedic.check.failed")
    assert "RuntimeError" in failed.summary and failed.component == "bad"
    assert run.status is Severity.CRITICAL  # the good component's critical disk still counts


def test_thresholds_from_the_stack_apply() -> None:
    """A file threshold changes the verdict for the same facts."""
    run = run_components({"h": {"kind": "fake", "value": 0.5}},
                         thresholds={"host.disk.full": {"warning": 0.4, "critical": 0.9}})
    assert run.findings[0].severity is Severity.WARNING and run.exit_code == 1


def test_dependency_failure_is_the_root_cause_listed_first() -> None:
    """api's http.slow is explained by db.down on its dependency: db.down is the root
    cause, linked by fingerprint, and sorted first."""
    run = run_components({
        "api": {"kind": "fake", "symptom": "http.slow", "value": 1, "depends_on": ["db"]},
        "db": {"kind": "fake", "symptom": "db.down", "value": 1},
        "cache": {"kind": "fake", "symptom": "cache.down", "value": 0},
    })
    first = run.findings[0]
    assert (first.component, first.symptom, first.root_cause) == ("db", "db.down", True)
    [slow] = with_symptom(run.findings, "http.slow")
    assert slow.explained_by == (first.fingerprint,)
    assert first.explains == (slow.fingerprint,)
    assert not slow.root_cause


def test_a_finding_about_one_dependency_is_explained_by_that_one_only() -> None:
    """A finding naming its dependency (as an open breaker does) is explained by that
    component and what it depends on, not by the other dependencies' failures."""
    stack = {
        "api": {"kind": "fake", "symptom": "http.slow", "value": 1,
                "depends_on": ["db", "payments"], "evidence": {"dependency": "payments"}},
        "db": {"kind": "fake", "symptom": "db.down", "value": 1},
        "payments": {"kind": "fake", "symptom": "http.status.error", "value": 1,
                     "depends_on": ["cache"]},
        "cache": {"kind": "fake", "symptom": "cache.down", "value": 1},
    }
    run = run_components(stack)
    [slow] = with_symptom(run.findings, "http.slow")
    causes = {f.fingerprint: f.component for f in run.findings}
    assert sorted(causes[fp] for fp in slow.explained_by) == ["cache", "payments"]
    stack["api"]["evidence"] = {"dependency": "nowhere"}  # not a dependency: all of them
    [slow] = with_symptom(run_components(stack).findings, "http.slow")
    assert len(slow.explained_by) == 3


@pytest.mark.parametrize(("error_kind", "explained"), [("refused", False), ("timeout", True)])
def test_a_refused_connection_is_not_explained_by_a_slow_dependency(
        error_kind: str, explained: bool) -> None:
    """Blocked locks on the database can make a service time out, never refuse a
    connection; a database that is down explains both (a crash loop at start)."""
    def run(cause: str) -> bool:
        found = run_components({
            "api": {"kind": "fake", "symptom": "http.down", "value": 1, "depends_on": ["db"],
                    "evidence": {"error_kind": error_kind}},
            "db": {"kind": "fake", "symptom": cause, "value": 1},
        }).findings
        [down] = with_symptom(found, "http.down")
        return bool(down.explained_by)

    assert run("db.locks.blocking") is explained
    assert run("db.down") is True


def test_transitive_dependencies_are_followed() -> None:
    """web → api → db: db.down explains problems on both dependents."""
    run = run_components({
        "web": {"kind": "fake", "symptom": "http.status.error", "value": 1,
                "depends_on": ["api"]},
        "api": {"kind": "fake", "symptom": "http.status.error", "value": 1,
                "depends_on": ["db"], "evidence": {"n": 2}},
        "db": {"kind": "fake", "symptom": "db.down", "value": 1},
    })
    roots = [f for f in run.findings if f.root_cause]
    assert [(f.component, f.symptom) for f in roots] == [("db", "db.down")]
    assert len(roots[0].explains) == 2


def test_unrelated_symptom_is_not_linked() -> None:
    """A dependency's problem that the table does not list as a cause explains nothing."""
    run = run_components({
        "api": {"kind": "fake", "symptom": "db.down", "value": 1, "depends_on": ["db"]},
        "db": {"kind": "fake", "symptom": "http.slow", "value": 1},
    })
    assert not any(f.root_cause or f.explained_by for f in run.findings)


def test_recorded_facts_replay_to_the_same_findings(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`doctor --record` writes the facts; evaluating them again gives the same verdicts."""
    stack = tmp_path / "s.yaml"
    stack.write_text("components:\n  h: {kind: fake, value: 0.97, evidence: {path: /srv}}\n")
    record = tmp_path / "facts.json"
    with pytest.raises(SystemExit):
        main(["doctor", "-c", str(stack), "-f", "json", "--record", str(record)])
    live = json.loads(capsys.readouterr().out)["findings"]
    facts = json.loads(record.read_text())["h"]["facts"]
    replayed = evaluate_facts("h", {"kind": "fake"}, "facts", facts)
    assert [(f.symptom, f.severity.value, f.fingerprint) for f in replayed] == \
        [(f["symptom"], f["severity"], f["fingerprint"]) for f in live]
