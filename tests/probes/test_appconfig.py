"""The `appconfig` kind: env files, required variables, pip check, signing secrets, JWTs,
webhook signatures and dry-run flags, each fault induced for real in tmp_path.

Nothing here talks to the network: the virtualenv is created offline (ensurepip's
bundled wheel) and the only "endpoints" are strings in an env file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stackmedic.doctor import Run
from stackmedic.findings import Finding, Severity
from stackmedic.probes._appfacts import parse_dotenv
from stackmedic.report import render
from stackmedic.testing import problems, run_components, with_symptom
from tests.probes.servers import unfilled_remedies

NAMES = ("DATABASE_URL", "WORKERS", "DEBUG", "JWT_SECRET", "WEBHOOK_SECRET", "DRY_RUN",
         "USE_MOCKS", "PAYMENT_URL", "API_TOKEN", "SIGNING_SECRET")
JWT_KEY = "k" + secrets.token_hex(24)  # 49 characters
HOOK_KEY = "w" + secrets.token_hex(16)  # 33 characters


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The doctor's own environment must not leak the names these tests use."""
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real virtualenv with pip (from ensurepip, offline) and nothing else."""
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, capture_output=True)
    return root


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict[str, Any], key: str = JWT_KEY, alg: str = "HS256") -> str:
    """A JWS compact token signed with HMAC (or unsigned for alg none)."""
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}.get(alg)
    sig = b64(hmac.new(key.encode(), f"{head}.{body}".encode(), digest).digest()) if digest else ""
    return f"{head}.{body}.{sig}"


def sign(body: bytes, key: str = HOOK_KEY) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def write_env(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def run_app(environ: dict[str, str] | None = None, **spec: Any) -> Run:
    run = run_components({"cfg": {"kind": "appconfig", **spec}}, deadline=60, environ=environ)
    assert unfilled_remedies(run.findings) == []
    assert with_symptom(run.findings, "stackmedic.check.failed") == []
    return run


def only(run: Run, symptom: str) -> Finding:
    found = with_symptom(run.findings, symptom)
    assert len(found) == 1, [f.summary for f in run.findings]
    return found[0]


@pytest.fixture
def healthy(tmp_path: Path, venv: Path) -> dict[str, Any]:
    """A spec whose every check passes."""
    env = write_env(tmp_path, "# shop settings", "DATABASE_URL=postgresql://app@db:5432/app",
                    "export WORKERS=4", "DEBUG='false'", f'JWT_SECRET="{JWT_KEY}"',
                    f"WEBHOOK_SECRET={HOOK_KEY}  # rotated monthly", "DRY_RUN=0",
                    "USE_MOCKS=false", "PAYMENT_URL=https://api.payments.example.com/v1")
    payload = tmp_path / "sample.json"
    payload.write_bytes(b'{"id": "evt_1", "type": "charge.succeeded"}')
    return {"env_file": env, "python": str(venv / "bin" / "python"),
            "required": {"DATABASE_URL": "url", "WORKERS": "int", "DEBUG": "bool",
                         "JWT_SECRET": "str"},
            "secrets": {"JWT_SECRET": {"min_length": 32}, "WEBHOOK_SECRET": {"min_length": 16}},
            "tokens": [{"name": "api", "value": "${API_TOKEN}", "secret_env": "JWT_SECRET"}],
            "webhooks": [{"payload_file": str(payload), "signature": sign(payload.read_bytes()),
                          "secret_env": "WEBHOOK_SECRET"}],
            "dry_run": {"flag": "DRY_RUN", "mock_flag": "USE_MOCKS",
                        "real_endpoints": ["PAYMENT_URL"]}}


def test_healthy_config_gives_only_ok_findings(healthy: dict[str, Any]) -> None:
    """A well-formed env file, strong secrets, a valid token and signature, consistent flags
    and a clean virtualenv give one ok finding per symptom, with its number."""
    token = make_jwt({"sub": "u1", "exp": int(time.time()) + 7200})
    run = run_app(environ={"API_TOKEN": token}, **healthy)
    assert problems(run.findings) == []
    assert {f.symptom for f in run.findings} == {
        "app.config.invalid", "app.dependencies.broken", "app.secret.weak",
        "app.token.expired", "app.webhook.signature_invalid", "app.dry_run.inconsistent"}
    assert only(run, "app.config.invalid").observed == 0
    assert only(run, "app.dependencies.broken").observed == 0
    assert 7000 < only(run, "app.token.expired").observed <= 7200  # type: ignore[operator]
    assert {f.observed for f in with_symptom(run.findings, "app.secret.weak")} == {49, 33}


def test_malformed_line_missing_variable_and_wrong_type(tmp_path: Path) -> None:
    """A line with a space in its name, an unclosed quote, a missing URL and a
    non-integer are named by line number and key; no value is shown."""
    env = write_env(tmp_path, "WORKERS=four-zq", "DEBUG=true", "THIS IS=broken-zq",
                    'JWT_SECRET="open-s3cret-zq', "APP_NAME=shop")
    run = run_app(env_file=env, required={"DATABASE_URL": "url", "WORKERS": "int",
                                          "DEBUG": "bool"})
    invalid = only(run, "app.config.invalid")
    assert invalid.severity is Severity.CRITICAL and invalid.observed == 4
    assert invalid.evidence["malformed_lines"] == [3, 4]
    assert invalid.evidence["missing"] == ["DATABASE_URL"]
    assert invalid.evidence["wrong_type"] == [
        {"variable": "WORKERS", "type": "int", "problem": "is not an integer"}]
    assert "line 3" in invalid.summary and "WORKERS (int) is not an integer" in invalid.summary
    shown = json.dumps(invalid.to_dict())
    assert "-zq" not in shown


def test_process_environment_overrides_the_env_file(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a 12-factor app, WORKERS=8 in the environment wins over WORKERS=four in
    the file, so the settings load."""
    monkeypatch.setenv("WORKERS", "8")
    run = run_app(env_file=write_env(tmp_path, "WORKERS=four"), required={"WORKERS": "int"})
    assert only(run, "app.config.invalid").severity is Severity.OK
    assert run.facts["cfg"]["settings"]["required"][0]["source"] == "environment"


def test_dotenv_parsing_follows_python_dotenv() -> None:
    """export, quotes, escapes, inline comments and ${VAR} expansion (not in single
    quotes) read as python-dotenv reads them."""
    text = ("export A=1\nB='x ${A}'\nC=\"two\\nlines ${A}\"\nD=plain # note\n"
            "E=${HOME_X:-fallback}\nF=\"multi\nline\"\nG\n")
    values, malformed = parse_dotenv(text, {})
    assert values == {"A": "1", "B": "x ${A}", "C": "two\nlines 1", "D": "plain",
                      "E": "fallback", "F": "multi\nline"}
    assert [m["line"] for m in malformed] == [8]


def test_pip_check_finds_a_missing_requirement(venv: Path) -> None:
    """A distribution requiring a package nobody installed makes pip check fail:
    app.dependencies.broken names the package and the requirement."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    info = site / "fakepkg-1.0.dist-info"
    info.mkdir()
    try:
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n"
                                       "Requires-Dist: nonexistent-pkg>=1\n")
        run = run_app(python=str(venv / "bin" / "python"))
    finally:
        (info / "METADATA").unlink()
        info.rmdir()
    broken = only(run, "app.dependencies.broken")
    assert broken.severity is Severity.CRITICAL and broken.observed == 1
    assert broken.evidence["package"] == "fakepkg"
    assert broken.evidence["requirement"] == "nonexistent-pkg"
    assert broken.remedy is not None and any("pip install 'nonexistent-pkg'" in step
                                             for step in broken.remedy.steps)


def test_pip_check_without_an_interpreter_is_unknown(tmp_path: Path) -> None:
    """An interpreter that does not exist is unknown, with the reason, never ok."""
    broken = only(run_app(python=str(tmp_path / "nope" / "python")), "app.dependencies.broken")
    assert broken.severity is Severity.UNKNOWN and "cannot run" in broken.summary


def test_pip_check_is_bounded_by_the_collector_time(tmp_path: Path) -> None:
    """An interpreter that never answers is stopped at the component's timeout and
    reported unknown with the reason, not as a failed check."""
    hung = tmp_path / "python"
    hung.write_text("#!/bin/sh\nexec sleep 60\n")
    hung.chmod(0o755)
    broken = only(run_app(python=str(hung), timeout=1), "app.dependencies.broken")
    assert broken.severity is Severity.UNKNOWN and "did not finish" in broken.summary


def test_weak_secrets_placeholder_short_and_missing(tmp_path: Path) -> None:
    """A placeholder, a too-short and a missing secret are each critical, with the
    length against the minimum and no value shown."""
    env = write_env(tmp_path, "JWT_SECRET=changeme", "WEBHOOK_SECRET=short1234")
    run = run_app(env_file=env, secrets={"JWT_SECRET": {}, "WEBHOOK_SECRET": {"min_length": 16},
                                         "SIGNING_SECRET": {}})
    weak = {f.evidence["variable"]: f for f in with_symptom(run.findings, "app.secret.weak")}
    assert {f.severity for f in weak.values()} == {Severity.CRITICAL}
    assert "placeholder" in weak["JWT_SECRET"].summary
    assert (weak["WEBHOOK_SECRET"].observed, weak["WEBHOOK_SECRET"].threshold) == (9, 16)
    assert "not set" in weak["SIGNING_SECRET"].summary
    assert "short1234" not in json.dumps([f.to_dict() for f in run.findings])


def token_run(tmp_path: Path, token: str, **spec: Any) -> Finding:
    env = write_env(tmp_path, f"JWT_SECRET={JWT_KEY}")
    run = run_app(env_file=env, tokens=[{"name": "api", "value": token,
                                         "secret_env": "JWT_SECRET", **spec}])
    return only(run, "app.token.expired")


def test_expired_token(tmp_path: Path) -> None:
    """A correctly signed token whose exp passed an hour ago is critical and says when."""
    found = token_run(tmp_path, make_jwt({"exp": int(time.time()) - 3600}))
    assert found.severity is Severity.CRITICAL and "expired 1.0 h ago" in found.summary
    assert found.evidence["verification"] == "valid" and found.evidence["exp"].endswith("Z")
    assert found.observed is not None and found.observed < 0  # type: ignore[operator]


def test_token_signed_with_another_key(tmp_path: Path) -> None:
    """A token signed with another HMAC key does not verify: critical, 'another key'."""
    found = token_run(tmp_path, make_jwt({"exp": int(time.time()) + 600}, key="x" * 40))
    assert found.severity is Severity.CRITICAL
    assert found.evidence["verification"] == "invalid" and "another key" in (found.cause or "")


@pytest.mark.parametrize(("alg", "verification"), [("none", "unsigned"),
                                                   ("HS512", "not_allowed")])
def test_unsigned_or_unaccepted_algorithm(tmp_path: Path, alg: str, verification: str) -> None:
    """alg none, or an algorithm the app does not accept, is critical whatever the key."""
    found = token_run(tmp_path, make_jwt({"exp": int(time.time()) + 600}, alg=alg))
    assert found.severity is Severity.CRITICAL
    assert found.evidence["verification"] == verification


def rs256(claims: dict[str, Any], tmp_path: Path) -> tuple[str, str, str]:
    """(token signed with a new RSA key, its public key PEM path, another key's path)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]
    paths = []
    for i, key in enumerate(keys):
        path = tmp_path / f"pub{i}.pem"
        path.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        paths.append(str(path))
    head = b64(json.dumps({"alg": "RS256"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = keys[0].sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64(sig)}", paths[0], paths[1]


def test_asymmetric_tokens_need_the_public_key(tmp_path: Path) -> None:
    """RS256 without a public key is unknown; with the right PEM it verifies, with
    another key's PEM it is critical."""
    token, right, wrong = rs256({"exp": int(time.time()) + 600}, tmp_path)
    unknown = token_run(tmp_path, token, algorithms=["RS256"])
    assert unknown.severity is Severity.UNKNOWN
    assert "cannot verify asymmetric tokens without the public key" in unknown.summary
    ok = token_run(tmp_path, token, algorithms=["RS256"], public_key_file=right)
    assert ok.severity is Severity.OK
    bad = token_run(tmp_path, token, algorithms=["RS256"], public_key_file=wrong)
    assert bad.severity is Severity.CRITICAL and bad.evidence["verification"] == "invalid"


def webhook_run(tmp_path: Path, body: bytes, signature: str) -> Finding:
    payload = tmp_path / "delivery.json"
    payload.write_bytes(body)
    run = run_app(env_file=write_env(tmp_path, f"WEBHOOK_SECRET={HOOK_KEY}"),
                  webhooks=[{"payload_file": str(payload), "signature": signature,
                             "secret_env": "WEBHOOK_SECRET"}])
    return only(run, "app.webhook.signature_invalid")


def test_webhook_signed_with_another_secret(tmp_path: Path) -> None:
    """An HMAC-SHA256 signature made with another secret is critical; no near miss."""
    body = b'{"id": "evt_2"}'
    found = webhook_run(tmp_path, body, sign(body, key="other-secret-0123456789"))
    assert found.severity is Severity.CRITICAL and found.evidence["matches_when"] == []
    assert "another secret" in (found.cause or "")


def test_webhook_body_changed_by_a_trailing_newline(tmp_path: Path) -> None:
    """A payload saved with a newline the sender did not sign is critical, and the
    finding says it verifies without the trailing newline."""
    body = b'{"id": "evt_3"}'
    found = webhook_run(tmp_path, body + b"\n", sign(body))
    assert found.severity is Severity.CRITICAL
    assert found.evidence["matches_when"] == ["without the trailing newline"]


def dry_run(tmp_path: Path, *lines: str) -> Finding:
    run = run_app(env_file=write_env(tmp_path, *lines),
                  dry_run={"flag": "DRY_RUN", "mock_flag": "USE_MOCKS",
                           "real_endpoints": ["PAYMENT_URL"]})
    return only(run, "app.dry_run.inconsistent")


def test_dry_run_on_with_a_real_endpoint(tmp_path: Path) -> None:
    """DRY_RUN on while PAYMENT_URL points at a real-looking host is critical; only the
    host is shown, never the URL's key-bearing query."""
    found = dry_run(tmp_path, "DRY_RUN=true", "PAYMENT_URL=https://api.payments.example.com/"
                    "v1?api_key=live-9f8e7d6c5b4a")
    assert found.severity is Severity.CRITICAL
    assert (found.evidence["flag"], found.evidence["host"]) == ("DRY_RUN",
                                                                "api.payments.example.com")
    assert "live-9f8e7d6c5b4a" not in json.dumps(found.to_dict())


def test_mocks_off_while_the_endpoint_is_a_mock(tmp_path: Path) -> None:
    """Live mode (both flags off) with PAYMENT_URL on localhost is critical."""
    found = dry_run(tmp_path, "DRY_RUN=false", "USE_MOCKS=0",
                    "PAYMENT_URL=http://localhost:9999/payments")
    assert found.severity is Severity.CRITICAL and "a mock" in found.summary
    assert found.evidence["variable"] == "PAYMENT_URL"


@pytest.fixture
def canary() -> Iterator[str]:
    yield "canary-" + secrets.token_hex(20)


def test_canary_secret_appears_in_no_output(tmp_path: Path, canary: str) -> None:
    """A secret used as signing key, token claim, malformed line, mistyped value and URL
    query is absent from facts, findings and every report format."""
    env = write_env(tmp_path, f"JWT_SECRET={canary}", f"WEBHOOK_SECRET={canary}",
                    f"WORKERS={canary}", f"BROKEN LINE={canary}",
                    f"PAYMENT_URL=https://pay.example.com/?token={canary}", "DRY_RUN=yes")
    payload = tmp_path / "p.json"
    payload.write_bytes(b"{}")
    run = run_app(env_file=env, required={"WORKERS": "int"}, secrets={"JWT_SECRET": {}},
                  tokens=[{"value": make_jwt({"sub": canary, "exp": 1}, key="k" * 40),
                           "secret_env": "JWT_SECRET"}],
                  webhooks=[{"payload_file": str(payload), "signature": sign(b"x"),
                             "secret_env": "WEBHOOK_SECRET"}],
                  dry_run={"flag": "DRY_RUN", "real_endpoints": ["PAYMENT_URL"]})
    assert len(problems(run.findings)) >= 4
    assert canary not in json.dumps(run.facts)
    assert canary not in json.dumps([f.to_dict() for f in run.findings])
    for fmt in ("terminal", "json", "markdown", "nagios"):
        assert canary not in render(run, fmt), fmt
