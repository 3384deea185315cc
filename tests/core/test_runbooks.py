"""Runbooks: one per emitted symptom, with the four sections, filled from evidence."""

import re

import pytest

from stackmedic.checks import all_probes
from stackmedic.findings import Finding, Severity
from stackmedic.runbooks import SECTIONS, attach_remedy, fill, fix_steps, has_runbook, load_runbook
from stackmedic.symptoms import catalogue


def builtin_symptoms() -> set[str]:
    return {s for probe in all_probes().values()
            if probe.config.__module__.startswith("stackmedic.")
            for rule in probe.rules for s in rule.symptoms} | {"stackmedic.check.failed"}


def test_every_emitted_symptom_has_a_runbook() -> None:
    """Each symptom a built-in check can emit has src/stackmedic/runbooks/<id>.md."""
    missing = sorted(s for s in builtin_symptoms() if not has_runbook(s))
    assert not missing


def test_runbooks_have_the_four_sections_and_fix_steps() -> None:
    """Every runbook has What it means / Confirm / Fix / Prevent and at least one step."""
    for symptom in catalogue():
        if not has_runbook(symptom):
            continue
        text = load_runbook(symptom)
        titles = re.findall(r"^## (.+)$", text, re.M)
        assert titles == list(SECTIONS), symptom
        assert fix_steps(text), symptom


def test_fill_uses_evidence_and_keeps_unknown_placeholders_visible() -> None:
    """`{evidence.pid}` is filled; a placeholder with no value stays as `<name>`."""
    finding = Finding(check="x.y", symptom="stackmedic.check.failed", component="db",
                      severity=Severity.UNKNOWN, summary="s", evidence={"pid": 42})
    assert fill("kill {evidence.pid} on {component}; {evidence.user}", finding) == \
        "kill 42 on db; <user>"
    assert fill("json {\"a\": 1}", finding) == "json {\"a\": 1}"


def test_problem_findings_get_remedy_steps() -> None:
    """A problem finding's remedy names its runbook and carries filled-in steps."""
    finding = Finding(check="x.y", symptom="stackmedic.check.failed", component="db",
                      severity=Severity.UNKNOWN, summary="s", evidence={"error": "Boom"})
    remedy = attach_remedy(finding).remedy
    assert remedy is not None and remedy.runbook == "stackmedic.check.failed"
    assert any("Boom" in step for step in remedy.steps)
    ok = Finding(check="x.y", symptom="stackmedic.check.failed", component="db",
                 severity=Severity.OK, summary="fine")
    assert attach_remedy(ok).remedy is None


def test_floats_are_filled_as_a_person_writes_them_and_explain_shows_no_braces(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A measured 2.7090124249998553 s reads 2.709 in a remedy; tiny values keep three
    significant digits; `stackmedic explain` shows <key> where a value goes."""
    from stackmedic.cli import main
    from stackmedic.findings import Finding, Severity
    from stackmedic.runbooks import fill

    finding = Finding(check="c", symptom="db.down", component="db",
                      severity=Severity.CRITICAL, summary="s", observed=2.7090124249998553,
                      evidence={"tiny": 0.000123456, "whole": 3.0})
    assert fill("{observed} {evidence.tiny} {evidence.whole}", finding) == "2.709 0.000123 3.0"
    with pytest.raises(SystemExit):
        main(["explain", "db.locks.blocking"])
    out = capsys.readouterr().out
    assert "<head_pid>" in out and "{evidence." not in out


def test_a_multi_line_value_keeps_the_indentation_of_its_line() -> None:
    """Two statements filled into an indented code block stay in the block."""
    finding = Finding(check="c", symptom="db.down", component="db",
                      severity=Severity.CRITICAL, summary="s",
                      evidence={"fix": "SET x = 1;\nROLLBACK PREPARED 'tx';"})
    template = "- End it:\n  ```\n  {evidence.fix}\n  ```\n"
    assert fill(template, finding) == \
        "- End it:\n  ```\n  SET x = 1;\n  ROLLBACK PREPARED 'tx';\n  ```\n"
