"""The terminal report on a narrow terminal: wrapped lines keep their indentation."""

from __future__ import annotations

from dataclasses import replace

from stackmedic.report import render
from stackmedic.testing import run_components

LONG = "word " * 40


def test_wrapped_summary_cause_and_evidence_stay_indented() -> None:
    """At 60 columns every wrapped line of a finding starts at its text's column, so
    the severity column and the component headings stay readable."""
    run = run_components({"db": {"kind": "fake", "symptom": "db.down", "value": 1,
                                 "evidence": {"detail": LONG.strip()[:50]}}})
    run.findings[0] = replace(run.findings[0], summary="the server refused " + LONG,
                              cause="because " + LONG)
    text = render(run, "terminal", color=False, width=60)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "db.down" in line)
    assert lines[start].startswith("  CRITICAL db.down: the server refused")
    body = [line for line in lines[start + 1:] if line.strip()]
    assert len(body) > 6  # the summary and the cause did wrap
    assert all(line.startswith(" " * 11) for line in body), body
    assert all(len(line) <= 60 for line in lines)


def test_root_causes_wrap_under_their_text_and_count_repeated_effects() -> None:
    """A long root-cause line wraps right of its bullet, and two findings of the same
    symptom on one component are listed once with their count."""
    run = run_components({
        "api": {"kind": "fake", "symptom": "http.slow", "value": 1, "depends_on": ["db"]},
        "db": {"kind": "fake", "symptom": "db.down", "value": 1},
    })
    [slow] = [f for f in run.findings if f.symptom == "http.slow"]
    [down] = [f for f in run.findings if f.symptom == "db.down"]
    twin = replace(slow, fingerprint="twin0000000000ff")
    run.findings[:] = [replace(down, summary="refused " + LONG,
                               explains=(slow.fingerprint, twin.fingerprint)), slow, twin]
    lines = render(run, "terminal", color=False, width=60).splitlines()
    start = lines.index("Probable root causes")
    section = lines[start + 1:lines.index("", start)]
    assert section[0].startswith("  ● db db.down: refused word")
    assert all(line.startswith("    ") for line in section[1:]), section
    assert any("explains: api http.slow (x2)" in line for line in section), section


def test_each_root_cause_shows_its_first_fix_on_the_first_screen() -> None:
    """The first step of a root cause's remedy is printed under it, before the
    components, in the terminal and Markdown reports (there as one code span, though the
    step itself holds backticks)."""
    from stackmedic.report.markdown import _code

    run = run_components({
        "api": {"kind": "fake", "symptom": "http.slow", "value": 1, "depends_on": ["db"]},
        "db": {"kind": "fake", "symptom": "db.down", "value": 1},
    })
    [down] = [f for f in run.findings if f.symptom == "db.down"]
    assert down.root_cause and down.remedy is not None
    first = next(line.strip() for line in down.remedy.steps[0].splitlines()
                 if line.strip() and not line.strip().startswith("```"))
    text = render(run, "terminal", color=False, width=200)
    section = text[text.index("Probable root causes"):text.index("\ndb (fake)")]
    assert " ".join(f"fix: {first}".split()) in " ".join(section.split())  # may wrap
    assert f"fix: {_code(first)}" in render(run, "markdown")


def test_a_long_info_line_wraps_under_its_text() -> None:
    """Info findings (shown under their component) wrap like problems do."""
    from stackmedic.findings import Severity

    run = run_components({"db": {"kind": "fake", "symptom": "db.down", "value": 0}})
    run.findings[0] = replace(run.findings[0], severity=Severity.INFO, summary="note " + LONG)
    lines = render(run, "terminal", color=False, width=60).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  INFO"))
    body = [line for line in lines[start + 1:] if line.strip()]
    assert body and all(line.startswith(" " * 11) for line in body), body


def test_a_fix_that_starts_with_a_lead_in_shows_its_command() -> None:
    """A first step such as "List them:" followed by a command shows both; in Markdown a
    command holding backticks stays one code span."""
    from stackmedic.findings import Remedy
    from stackmedic.report.markdown import _code
    from stackmedic.report.model import first_fix

    remedy = Remedy(runbook="db.down", steps=("List who holds the slots:\n```\nSELECT 1;\n```",))
    assert first_fix({"remedy": {"steps": list(remedy.steps)}}) == \
        "List who holds the slots: SELECT 1;"
    assert _code("see `ss -ltn`") == "`` see `ss -ltn` ``"
    assert _code("SELECT 1;") == "`SELECT 1;`"
