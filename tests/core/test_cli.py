"""The CLI: thin commands, Nagios exit codes, one-line errors, fast help."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stackmedic.cli import main

STACK = """\
stack: shop
components:
  api: {kind: fake, symptom: http.slow, value: 1, depends_on: [db]}
  db: {kind: fake, symptom: db.down, value: 1, evidence: {host: 127.0.0.1}}
"""


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture
def stack_file(tmp_path: Path) -> Path:
    path = tmp_path / "stackmedic.yaml"
    path.write_text(STACK)
    return path


def test_json_output_schema(capsys: pytest.CaptureFixture[str], stack_file: Path) -> None:
    """`doctor --format json` prints the documented object; exit code is the worst finding."""
    code, out, _ = run_cli(capsys, "doctor", "--config", str(stack_file), "--format", "json")
    report = json.loads(out)
    assert code == 2
    assert {"stackmedic", "started_at", "duration_ms", "status", "components", "findings"} <= \
        set(report)
    assert report["status"] == "critical"
    assert report["started_at"].endswith("Z")
    assert report["findings"][0]["root_cause"] is True
    assert report["findings"][0]["symptom"] == "db.down"


def test_root_cause_first_in_terminal_and_markdown(capsys: pytest.CaptureFixture[str],
                                                   stack_file: Path) -> None:
    """Terminal and Markdown reports list the dependency's finding as root cause first."""
    _, out, _ = run_cli(capsys, "doctor", "-c", str(stack_file))
    assert out.index("Probable root causes") < out.index("db.down") < out.index("http.slow")
    _, md, _ = run_cli(capsys, "doctor", "-c", str(stack_file), "-f", "markdown")
    roots = md.index("## Probable root causes")
    assert roots < md.index("**db: db.down**") < md.index("## Findings")


def test_nagios_line(capsys: pytest.CaptureFixture[str], stack_file: Path) -> None:
    """`--format nagios` prints one status line with perfdata."""
    code, out, _ = run_cli(capsys, "doctor", "-c", str(stack_file), "-f", "nagios")
    assert code == 2
    assert out.count("\n") == 1
    assert out.startswith("STACKMEDIC CRITICAL - ")
    assert "|" in out and " api.http.slow=1" in out


def test_bad_stack_file_is_one_line_exit_3(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    """A malformed stack file gives one stderr line with file and line, and exit 3."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("components:\n  db:\n    kind: fake\n    port: [1\n")
    code, out, err = run_cli(capsys, "doctor", "-c", str(bad))
    assert code == 3 and out == ""
    assert err.count("\n") == 1 and str(bad) in err and "Traceback" not in err


def test_config_check(capsys: pytest.CaptureFixture[str], stack_file: Path,
                      tmp_path: Path) -> None:
    """`config check` says ok for a good file and exits 3 with the error for a bad one."""
    code, out, _ = run_cli(capsys, "config", "check", str(stack_file))
    assert code == 0 and "ok" in out and "api (fake)" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("components:\n  db: {kind: fake, depends_on: [nope]}\n")
    code, _, err = run_cli(capsys, "config", "check", str(bad))
    assert code == 3 and f"{bad}:2: components.db.depends_on.0: unknown component" in err


def test_config_check_prints_every_error(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    """`config check` prints one line per independent mistake, exit 3, no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("components:\n  db: {kind: fake, depends_on: [nope]}\n"
                   "thresholds:\n  host.disk.full: {warn: 0.7}\n")
    code, _, err = run_cli(capsys, "config", "check", str(bad))
    assert code == 3 and "Traceback" not in err
    assert err.splitlines() == [
        f"stackmedic: error: {bad}:2: components.db.depends_on.0: unknown component 'nope'",
        f"stackmedic: error: {bad}:4: thresholds.host.disk.full.warn: unknown key "
        "(did you mean 'warning'?)"]


def test_config_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """`config schema` prints a JSON Schema."""
    code, out, _ = run_cli(capsys, "config", "schema")
    assert code == 0 and json.loads(out)["title"] == "stackmedic stack file"


def test_explain(capsys: pytest.CaptureFixture[str]) -> None:
    """`explain` prints a runbook; an unknown id is one line with a suggestion, exit 3."""
    code, out, _ = run_cli(capsys, "explain", "stackmedic.check.failed")
    assert code == 0 and "## Fix" in out
    code, _, err = run_cli(capsys, "explain", "stackmedic.check.faild")
    assert code == 3 and "did you mean 'stackmedic.check.failed'" in err


def test_bad_flag_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    """A usage error is unknown (3), not Nagios critical (2)."""
    code, _, err = run_cli(capsys, "doctor", "--no-such-flag")
    assert code == 3 and "No such option" in err


def test_checks_lists_registered_rules(capsys: pytest.CaptureFixture[str]) -> None:
    """`checks --json` lists every rule with its kind and symptoms."""
    code, out, _ = run_cli(capsys, "checks", "--json")
    rows = json.loads(out)
    assert code == 0 and any(r["check"] == "fake.judge" for r in rows)


def test_help_does_not_import_heavy_modules() -> None:
    """`stackmedic --help` imports neither httpx, pydantic, psutil nor rich."""
    code = ("import sys; from stackmedic.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = {'httpx', 'pydantic', 'psutil', 'rich', 'psycopg', 'redis'}\n"
            "heavy &= set(sys.modules)\n"
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().endswith("[]")


def test_nagios_ranges_of_lower_is_worse_levels_have_a_colon() -> None:
    """Available memory alerts when it falls: its levels are written "15:" and "5:", as
    the plugin guidelines spell a range whose lower bound alerts; disk usage stays "85"."""
    import re

    from stackmedic.report import render
    from stackmedic.testing import run_components

    text = render(run_components({"box": {"kind": "host"}}), "nagios")
    assert re.search(r" box\.host\.memory\.pressure=[\d.]+%;15:;5:( |$)", text), text
    assert re.search(r"host\.disk\.full\.[^=]+=[\d.]+%;85;95( |$)", text), text
    assert ".None" not in text
