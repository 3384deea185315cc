"""Component kind `appconfig`: an app's settings, secrets, tokens, webhooks, dependencies.

    {kind: appconfig, env_file: ./.env, required: {WORKERS: int}, python: ./.venv/bin/python,
     secrets: {JWT_SECRET: {min_length: 32}}, dry_run: {flag: DRY_RUN, real_endpoints: [API]}}

Variables are read as a 12-factor app sees them: the env file (parsed as python-dotenv
does) overlaid by the process environment. Facts carry names, lengths, line numbers and
verdicts, never a value; every secret read is registered for redaction besides.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stackmedic.checks import CollectContext, Facts, Probe, RuleContext
from stackmedic.config import ComponentBase
from stackmedic.findings import Finding, Severity
from stackmedic.redact import is_secret_key, register_secret

__all__ = ["AppConfigComponent", "probe"]

VarType = Literal["str", "int", "float", "bool", "url", "json", "port"]
_MAX_FILE = 1 << 20
_CAP = 20  # items kept in evidence lists


class SecretSpec(BaseModel):
    """How strong one signing secret must be."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_length: int = Field(32, ge=1, description="characters at least")


class TokenSpec(BaseModel):
    """A JWT the app must accept: `{value: "${API_TOKEN}", secret_env: JWT_SECRET}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = Field(None, description="label in findings (default: token N)")
    value: str = Field(..., description="the token (write ${VAR}, not the token itself)")
    secret_env: str | None = Field(None, description="app variable with the HMAC secret")
    public_key_file: str | None = Field(None, description="PEM public key for RS/PS/ES/EdDSA")
    algorithms: list[str] = Field(default_factory=lambda: ["HS256"], min_length=1)
    leeway: float = Field(0.0, ge=0, description="seconds of clock skew tolerated")


class WebhookSpec(BaseModel):
    """A recorded delivery: payload file, the signature sent with it, the secret's name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = None
    payload_file: str
    signature: str = Field(..., description="as sent: sha256=<hex>, hex or base64")
    secret_env: str
    algorithm: Literal["sha1", "sha256", "sha384", "sha512"] = "sha256"


class DryRunSpec(BaseModel):
    """Flags that must agree with where the endpoints point."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    flag: str | None = Field(None, description="variable that turns dry run on")
    mock_flag: str | None = Field(None, description="variable that turns mocks on")
    real_endpoints: list[str] = Field(default_factory=list, description="URL variables")
    mock_markers: list[str] = Field(default_factory=lambda: [
        "mock", "sandbox", "stub", "fake", "localhost", "127.0.0.1", "[::1]"])


class AppConfigComponent(ComponentBase):
    """A stack-file entry: `{kind: appconfig, env_file: ./.env, required: {PORT: port}}`."""

    env_file: str | None = Field(None, description="dotenv file the app loads")
    environment: bool = Field(True, description="overlay the process environment on it")
    required: dict[str, VarType] = Field(default_factory=dict, description="name -> type")
    python: str | None = Field(None, description="the app's interpreter, for pip check")
    secrets: dict[str, SecretSpec] = Field(default_factory=dict, description="name -> minimum")
    tokens: list[TokenSpec] = Field(default_factory=list, description="JWTs that must verify")
    webhooks: list[WebhookSpec] = Field(default_factory=list, description="signed deliveries")
    dry_run: DryRunSpec | None = Field(None, description="flags and endpoints that must agree")


probe = Probe("appconfig", AppConfigComponent,
              description="application settings, secrets, tokens, webhooks, dependencies")


def _load(component: AppConfigComponent) -> tuple[dict[str, str], dict[str, str], Facts]:
    """(values, variable -> file|environment, facts about the env file)."""
    from stackmedic.probes._appfacts import parse_dotenv
    from stackmedic.probes._hostfacts import read_bytes_capped

    values: dict[str, str] = {}
    file: Facts = {"path": component.env_file}
    environ = os.environ if component.environment else {}
    if component.env_file:
        try:
            raw = read_bytes_capped(component.env_file, _MAX_FILE + 1)
            values, malformed = parse_dotenv(raw[:_MAX_FILE].decode("utf-8", "replace"),
                                             environ)
            file.update(variables=len(values), malformed=malformed[:_CAP],
                        malformed_count=len(malformed), truncated=len(raw) > _MAX_FILE)
        except OSError as err:
            file["error"] = f"{type(err).__name__}: {err.strerror or err}"
    sources, dry, secret = dict.fromkeys(values, "file"), component.dry_run, \
        _implicit_secrets(component)
    wanted = {*component.required, *secret, *([dry.flag, dry.mock_flag, *dry.real_endpoints]
                                             if dry else [])}
    for name, value in environ.items():  # a 12-factor app: the environment wins
        if name in values or name in wanted:
            values[name], sources[name] = value, "environment"
    for name, value in values.items():
        if name in secret or is_secret_key(name):
            register_secret(value)
    return values, sources, file


def _implicit_secrets(component: AppConfigComponent) -> dict[str, tuple[int, str]]:
    """variable -> (min length, used by). Secrets that tokens and webhooks sign with are
    judged too; RFC 7518 wants an HMAC key at least as long as the hash."""
    out: dict[str, tuple[int, str]] = {}
    for token in component.tokens:
        sizes = [int(a[2:]) // 8 for a in token.algorithms if a in ("HS256", "HS384", "HS512")]
        if token.secret_env and sizes:
            out[token.secret_env] = (max(sizes), "tokens")
    for hook in component.webhooks:
        out.setdefault(hook.secret_env, (16, "webhooks"))
    for name, spec in component.secrets.items():
        out[name] = (spec.min_length, out.get(name, (0, "secrets"))[1])
    return out


@probe.collector("settings", timeout=5.0)
def settings(component: AppConfigComponent, ctx: CollectContext) -> Facts | None:
    """Parse the env file, overlay the environment, type the required variables, measure
    the secrets and read the dry-run flags and endpoints."""
    from stackmedic.probes._appfacts import dry_run_facts, secret_facts, type_problem

    if not (component.env_file or component.required or _implicit_secrets(component)
            or component.dry_run):
        return None
    values, sources, file = _load(component)
    required = [{"variable": name, "type": kind, "source": sources.get(name, "missing"),
                 "problem": "is not set" if name not in values
                 else type_problem(kind, values[name])}
                for name, kind in component.required.items()]
    facts: Facts = {"env_file": file, "required": required, "secrets": [
        secret_facts(name, length, used_by, values.get(name), sources.get(name))
        for name, (length, used_by) in _implicit_secrets(component).items()]}
    if (dry := component.dry_run) is not None:
        facts["dry_run"] = dry_run_facts(values, [dry.flag, dry.mock_flag],
                                         dry.real_endpoints, dry.mock_markers)
    return facts


@probe.collector("signatures", timeout=5.0)
def signatures(component: AppConfigComponent, ctx: CollectContext) -> Facts | None:
    """Verify each configured JWT and webhook signature with the app's own secrets."""
    if not (component.tokens or component.webhooks):
        return None
    from stackmedic.probes._appfacts import inspect_jwt, webhook_facts

    values, _sources, _file = _load(component)
    tokens: list[Facts] = []
    for i, spec in enumerate(component.tokens, 1):
        register_secret(spec.value)
        secret = values.get(spec.secret_env or "")
        tokens.append({"name": spec.name or f"token {i}", "leeway": spec.leeway,
                       "verified_with": spec.public_key_file or spec.secret_env or "nothing",
                       **inspect_jwt(
            spec.value, algorithms=spec.algorithms, pem_file=spec.public_key_file,
            hmac_secret=None if secret is None else secret.encode(),
            secret_name=spec.secret_env)})
    hooks = [webhook_facts(h.name or Path(h.payload_file).name, h.payload_file, h.signature,
                           h.algorithm, values.get(h.secret_env), h.secret_env)
             for h in component.webhooks]
    return {"tokens": tokens, "webhooks": hooks}


@probe.collector("packages", timeout=60.0)
def packages(component: AppConfigComponent, ctx: CollectContext) -> Facts | None:
    """Run `python -m pip check` in the app's interpreter, bounded in time and output."""
    if not component.python:
        return None
    from stackmedic.probes._appfacts import pip_check
    from stackmedic.probes._net import budget  # leaves room to hand the facts back

    return {"python": component.python, **pip_check(component.python, budget(ctx), 64 << 10)}


@probe.rule("appconfig.settings", uses="settings", symptoms=["app.config.invalid"])
def settings_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """The env file parses and each required variable is set, with its type; no value shown."""
    file, required = facts["env_file"], facts["required"]
    if not file["path"] and not required:
        return
    path, malformed = file["path"] or "(the process environment)", file.get("malformed", [])
    bad = [r for r in required if r["problem"]]
    problems = ([f"{path}: {file['error']}"] if "error" in file else []) + [
        f"{path} line {m['line']}: {m['reason']}" for m in malformed] + [
        f"{r['variable']} ({r['type']}) {r['problem']}" for r in bad]
    evidence = {"env_file": path, "problems": problems[:_CAP],
                "malformed_lines": [m["line"] for m in malformed],
                "missing": [r["variable"] for r in bad if r["problem"] == "is not set"],
                "wrong_type": [{k: r[k] for k in ("variable", "type", "problem")}
                               for r in bad if r["problem"] != "is not set"],
                "variables": ", ".join(r["variable"] for r in bad) or "-"}
    count = len(problems) + file.get("malformed_count", 0) - len(malformed)
    common = {"evidence": evidence, "identity": ("env_file",), "observed": count}
    if not problems:
        yield ctx.finding("app.config.invalid", Severity.OK, f"settings load: "
                          f"{file.get('variables', 0)} variables in {path}, {len(required)} "
                          "required present and well-typed", **common)
        return
    more = f" (+{count - 4} more)" if count > 4 else ""
    yield ctx.finding("app.config.invalid", Severity.CRITICAL,
                      f"settings do not load: {'; '.join(problems[:4])}{more}",
                      cause="a malformed env-file line (a space in a name, an unclosed quote) "
                            "or a deployment missing a variable or giving it a wrong type",
                      **common)


@probe.rule("appconfig.secrets", uses="settings", symptoms=["app.secret.weak"])
def secrets_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Every signing secret is set, not a known default, and long enough."""
    for s in facts["secrets"]:
        name = s["variable"]
        verdicts = [
            (not s["set"], Severity.CRITICAL, f"is not set (used by {s['used_by']})",
             "never set by the deployment: signing fails, or the app uses a built-in default"),
            (s.get("placeholder"), Severity.CRITICAL, "is a known default/placeholder value",
             "an example value from .env.example or the docs was deployed: it is public"),
            (s.get("length", 0) < s["min_length"], Severity.CRITICAL,
             f"is {s.get('length')} characters, shorter than {s['min_length']}",
             "a short secret can be brute-forced offline from one signed token or webhook"),
            (s.get("whitespace"), Severity.WARNING, "has leading or trailing whitespace",
             "a copy-paste accident: a newline or space kept with the value"),
            (True, Severity.OK, f"is set, {s.get('length')} characters, not a default", None)]
        hit = next(v for v in verdicts if v[0])
        yield ctx.finding("app.secret.weak", hit[1], f"{name} {hit[2]}", cause=hit[3],
                          observed=s.get("length", 0), threshold=s["min_length"],
                          unit="chars", evidence={**s, "length": s.get("length", 0)},
                          identity=("variable",))


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _span(s: float) -> str:
    return f"{abs(s) / 3600:.1f} h" if abs(s) >= 3600 else f"{abs(s):.0f} s"


_TOKEN_CAUSE = {
    "invalid": "signed with another key: issuer and app hold different secrets (rotated on "
               "one side, or another environment's token), or the token was altered",
    "not_allowed": "the issuer signs with an algorithm the app does not accept, or a forgery",
    "unsigned": "an unsigned token (alg none): forged, or from a misconfigured issuer",
    "malformed": "not a JWT: truncated, quoted, prefixed with 'Bearer ', or another kind",
    "expired": "the client kept the token past exp without refreshing, or clocks disagree",
    "not_yet_valid": "the issuer's clock is ahead of this host's"}


@probe.rule("appconfig.tokens", uses="signatures", symptoms=["app.token.expired"])
def tokens_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Each presented JWT verifies (key and algorithm) and is within exp/nbf."""
    now = ctx.now.timestamp()
    for tok in facts["tokens"]:
        claims, leeway, verification = tok["claims"], tok["leeway"], tok["verification"]
        kinds = [verification] if verification in _TOKEN_CAUSE else []
        problems = [tok["reason"]] if kinds else []
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if exp is not None and now > exp + leeway:
            kinds.append("expired")
            problems.append(f"expired {_span(now - exp)} ago ({_when(exp)})")
        if nbf is not None and now + leeway < nbf:
            kinds.append("not_yet_valid")
            problems.append(f"not valid before {_when(nbf)}")
        evidence = {**{k: tok.get(k) for k in ("name", "kid", "verification", "verified_with")},
                    "alg": tok.get("alg") or "-", "problems": problems,
                    **{c: _when(claims[c]) for c in ("exp", "nbf", "iat") if c in claims},
                    **{c: claims[c] for c in ("iss", "aud") if c in claims}}
        left = round(exp - now, 1) if exp is not None else None
        common = {"evidence": evidence, "identity": ("name",), "observed": left, "unit": "s"}
        where = f"{tok['name']} ({evidence['alg']})"
        if kinds:
            yield ctx.finding("app.token.expired", Severity.CRITICAL,
                              f"{where}: {'; '.join(problems)}", cause=_TOKEN_CAUSE[kinds[0]],
                              **common)
        elif verification != "valid":
            yield ctx.finding("app.token.expired", Severity.UNKNOWN,
                              f"{where}: {tok['reason']}", **common)
        else:
            yield ctx.finding("app.token.expired", Severity.OK, f"{where}: signature verifies"
                              + (f", expires in {_span(left)}" if left is not None
                                 else ", no exp claim (never expires)"), **common)


@probe.rule("appconfig.webhooks", uses="signatures",
            symptoms=["app.webhook.signature_invalid"])
def webhooks_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Each recorded webhook delivery's HMAC signature verifies with the app's secret."""
    for hook in facts["webhooks"]:
        evidence = {k: hook.get(k) for k in ("name", "payload_file", "verified_with",
                                             "algorithm", "payload_bytes", "matches_when")}
        where, near = hook["name"], hook["matches_when"]
        common = {"evidence": evidence, "identity": ("payload_file",)}
        if hook["verification"] == "valid":
            yield ctx.finding("app.webhook.signature_invalid", Severity.OK,
                              f"{where}: HMAC-{hook['algorithm']} signature verifies", **common)
        elif hook["verification"] == "unverifiable":
            yield ctx.finding("app.webhook.signature_invalid", Severity.UNKNOWN,
                              f"{where}: {hook['reason']}", **common)
        else:
            yield ctx.finding(
                "app.webhook.signature_invalid", Severity.CRITICAL,
                f"{where}: {hook['reason']}" + (f"; it verifies {near[0]}" if near else ""),
                cause="the body was changed before verification: verify the raw request bytes"
                if near else "signed with another secret (rotated on one side, or another "
                "environment's), or for another body", **common)


_DRY_RUN_CAUSE = {
    "real": "the flag was switched on without switching the endpoints: any code path that "
            "ignores the flag acts for real",
    "mock": "live mode with test endpoints: real work (payments, e-mails) is silently not done",
    "flag": "a typo, or a value the app's parser reads differently from this one"}


@probe.rule("appconfig.dry_run", uses="settings", symptoms=["app.dry_run.inconsistent"])
def dry_run_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Dry-run and mock flags agree with where the endpoints point."""
    if (dry := facts.get("dry_run")) is None:
        return
    flags = [f for f in (dry["flag"], dry["mock_flag"]) if f]
    on, bad = [f for f in flags if f["on"]], [f for f in flags if not f["valid"]]
    real = [e for e in dry["endpoints"] if e["set"] and not e["mock"]]
    mock = [e for e in dry["endpoints"] if e["set"] and e["mock"]]
    evidence: Facts = {"flags": ", ".join(f["variable"] for f in flags) or "-",
                       "on": [f["variable"] for f in on], "endpoints": dry["endpoints"]}
    if on and real:
        case, flag, hits, said = "real", on[0], real, "is on but {variable} points at {host}, " \
            "a real endpoint"
    elif flags and mock and not on:
        case, flag, hits, said = "mock", flags[-1], mock, "is off (live) but {variable} points " \
            "at {host}, a mock (marker {marker!r})"
    elif bad:
        case, flag, hits, said = "flag", bad[0], [], "is not a boolean, so it reads as off"
    else:
        yield ctx.finding("app.dry_run.inconsistent", Severity.OK,
                          f"{', '.join(evidence['on']) or 'live mode'}: {len(real)} real and "
                          f"{len(mock)} mock endpoint(s), consistent", observed=0,
                          evidence=evidence, identity=("flags",))
        return
    hit = hits[0] if hits else {"variable": "-", "host": "-"}
    evidence.update(flag=flag["variable"], variable=hit["variable"], host=hit["host"])
    yield ctx.finding("app.dry_run.inconsistent",
                      Severity.WARNING if case == "flag" else Severity.CRITICAL,
                      f"{flag['variable']} {said.format(**hit)}", observed=len(hits or bad),
                      cause=_DRY_RUN_CAUSE[case], evidence=evidence, identity=("flags",))


def _said(p: Facts) -> str:
    return f"{p['package']} {p['version']} " + {
        "missing": f"requires {p['requirement']} (not installed)",
        "conflict": f"requires {p['requirement']}, has {p.get('installed')}",
        "platform": "is not supported on this platform"}[p["kind"]]


@probe.rule("appconfig.packages", uses="packages", symptoms=["app.dependencies.broken"])
def packages_rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """`pip check` finds no missing or conflicting requirement."""
    problems, python, outcome = facts["problems"], facts["python"], facts["outcome"]
    first = problems[0] if problems else {}
    evidence = {"python": python, "outcome": outcome, "problems": problems[:_CAP],
                "output_tail": facts.get("output_tail", ""),
                **{k: first.get(k, "-") for k in ("package", "requirement")}}
    common = {"evidence": evidence, "identity": ("python",), "observed": len(problems)}
    if outcome == "ok":
        yield ctx.finding("app.dependencies.broken", Severity.OK,
                          f"{python}: pip check finds no broken requirements", **common)
    elif outcome == "broken":
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        yield ctx.finding("app.dependencies.broken", Severity.CRITICAL,
                          f"{len(problems)} broken requirement(s): "
                          f"{'; '.join(map(_said, problems[:3]))}{more}",
                          cause="a package installed or upgraded without its dependencies "
                                "(--no-deps, a partial upgrade, two tools managing one "
                                "environment) or incompatible pins", **common)
    else:
        reason = ("pip is not installed in that interpreter" if outcome == "no_pip"
                  else facts.get("error") or facts.get("output_tail") or "it failed")
        yield ctx.finding("app.dependencies.broken", Severity.UNKNOWN,
                          f"{python}: pip check could not run: {reason}", **common)
