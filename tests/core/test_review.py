"""Review of the core: each test states a behaviour the brief promises and the core
missed before the review's fixes."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stackmedic.cli import main
from stackmedic.config import parse_stack
from stackmedic.doctor import Run
from stackmedic.errors import ConfigError
from stackmedic.findings import Finding, Severity
from stackmedic.report import render
from stackmedic.testing import run_components, with_symptom


def _reject_constant(name: str) -> None:
    raise ValueError(f"not JSON: {name}")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def _all_formats(run: Run) -> str:
    return "\n".join(render(run, fmt) for fmt in ("terminal", "json", "markdown", "nagios"))


# --- secrets --------------------------------------------------------------------------

def test_password_passed_as_a_command_line_flag_is_masked() -> None:
    """A password given as `--requirepass VALUE` in a process command line (as the process
    checks report it) never reaches any output format."""
    run = run_components({"cache": {"kind": "fake", "symptom": "cache.down", "value": 1,
                                    "evidence": {
                                        "cmdline": "redis-server --requirepass hunter2xyz "
                                                   "--port 7000",
                                        "requirepass": "hunter2xyz"}}})
    assert "hunter2xyz" not in _all_formats(run)



def test_password_inside_quoted_json_text_is_masked() -> None:
    """A JSON body or structured log line quoted in evidence has its password masked."""
    body = '{"user": "app", "password": "hunter2xyz", "api_key": "k3y-abcdef"}'
    run = run_components({"api": {"kind": "fake", "symptom": "http.status.error", "value": 1,
                                  "evidence": {"body": body}}})
    text = _all_formats(run)
    assert "hunter2xyz" not in text and "k3y-abcdef" not in text



def test_secret_named_environment_variable_values_are_masked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The value of a secret-named environment variable is masked wherever it shows up
    (redact.py promises this layer; nothing wires it in)."""
    monkeypatch.setenv("APP_DB_PASSWORD", "s3cr3t-env-val")
    run = run_components({"db": {"kind": "fake", "symptom": "db.down", "value": 1,
                                 "evidence": {"error": "login with s3cr3t-env-val refused"}}})
    assert "s3cr3t-env-val" not in _all_formats(run)


def test_stack_file_error_does_not_echo_the_password(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrongly typed field holding a DSN reports file and line but not the password."""
    monkeypatch.setenv("DB_PASSWORD", "hunter2xyz")
    path = tmp_path / "stackmedic.yaml"
    path.write_text("components:\n"
                    "  db: {kind: fake, value: 'postgresql://app:${DB_PASSWORD}@db/app'}\n")
    code, out, err = run_cli(capsys, "config", "check", str(path))
    assert code == 3 and f"{path}:2:" in err
    assert "hunter2xyz" not in err + out


# --- stack files --------------------------------------------------------------------


def test_yaml_merge_keys_are_expanded(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    """`<<: *anchor` merges a shared mapping and explicit keys win, as PyYAML's safe_load
    does; today it is a multi-line internal error without file or line."""
    path = tmp_path / "stackmedic.yaml"
    path.write_text("components:\n"
                    "  a: &base {kind: fake, symptom: db.down, value: 0}\n"
                    "  b:\n"
                    "    <<: *base\n"
                    "    value: 1\n")
    code, _, err = run_cli(capsys, "config", "check", str(path))
    assert code == 0, err
    stack = parse_stack(path.read_text())
    assert stack.components["b"].model_dump()["value"] == 1
    assert stack.components["b"].kind == "fake"



def test_non_scalar_key_is_a_one_line_error_with_file_and_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A complex (list) mapping key is reported as a stack-file error with file and line."""
    path = tmp_path / "stackmedic.yaml"
    path.write_text("components:\n  ? [a, b]\n  : {kind: fake}\n")
    code, _, err = run_cli(capsys, "config", "check", str(path))
    assert code == 3
    assert err.startswith(f"stackmedic: error: {path}:2:") and err.count("\n") == 1


def test_ratio_threshold_written_as_percent_is_rejected() -> None:
    """`host.disk.full: {warning: 85}` (meant as 85 %) is an error naming the line, not a
    threshold no disk can ever reach."""
    with pytest.raises(ConfigError) as info:
        parse_stack("components:\n  h: {kind: fake}\n"
                    "thresholds:\n  host.disk.full: {warning: 85, critical: 95}\n")
    assert info.value.line == 4


def test_threshold_for_a_symptom_no_check_measures_is_rejected() -> None:
    """A threshold override for a symptom that no rule judges against a number is an error,
    not a setting that silently does nothing."""
    with pytest.raises(ConfigError) as info:
        parse_stack("components:\n  db: {kind: fake, symptom: db.down}\n"
                    "thresholds:\n  db.down: {warning: 1}\n")
    assert info.value.line == 4


# --- verdicts, exit codes and output ------------------------------------------------


def test_nan_observation_is_unknown_and_json_stays_valid() -> None:
    """An observation of NaN (a Prometheus sample, 0/0) is unknown, never ok, and the JSON
    report stays strict JSON that jq or JSON.parse accept."""
    run = run_components({"m": {"kind": "fake", "symptom": "host.disk.full",
                                "value": float("nan")}})
    [finding] = with_symptom(run.findings, "host.disk.full")
    assert finding.severity is Severity.UNKNOWN
    json.loads(render(run, "json"), parse_constant=_reject_constant)
    assert "nan" not in render(run, "nagios").partition(" | ")[2].lower()  # perfdata


def test_info_only_run_reports_ok() -> None:
    """A run whose worst finding is info has status ok in JSON and `STACKMEDIC OK` in the
    Nagios line, as docs/json-output.md documents."""
    finding = Finding(check="fake.judge", symptom="db.down", component="db",
                      severity=Severity.INFO, summary="informational")
    run = Run("s", datetime.now(UTC), 1, {}, [finding])
    assert json.loads(render(run, "json"))["status"] == "ok"
    assert render(run, "nagios").startswith("STACKMEDIC OK")
    assert run.exit_code == 0



def test_a_run_that_checked_nothing_is_unknown() -> None:
    """A stack with no components (or no applicable checks) exits 3, not a green 0."""
    run = run_components({})
    assert run.exit_code == 3



def test_datetime_evidence_is_utc_iso_with_z() -> None:
    """A timestamp in evidence is rendered in UTC ISO 8601 with `Z` in JSON output."""
    stack = parse_stack("components:\n  db: {kind: fake, symptom: db.down, value: 1,\n"
                        "               evidence: {since: 2026-01-02T03:04:05+02:00}}\n")
    from stackmedic.doctor import run_doctor

    report = json.loads(render(run_doctor(stack), "json"))
    assert report["findings"][0]["evidence"]["since"] == "2026-01-02T01:04:05Z"
