"""Fact gatherers of `appconfig` that hold secret values or parse a format: JWTs
(HS256/384/512 with `hmac`, no new dependency; RS/PS/ES/EdDSA only with a PEM public
key, through `cryptography`), HMAC webhook signatures and the near misses that say what
changed, env files parsed as python-dotenv parses them, and a bounded `pip check`.

None returns a secret, a signature or a line of an env file: only header fields, time
claims, lengths, line numbers and verdicts (`valid`, `invalid`, `unsigned`,
`not_allowed`, `unverifiable`, `malformed`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from stackmedic.probes._hostfacts import read_bytes_capped
from stackmedic.redact import register_secret

__all__ = ["BOOL", "dry_run_facts", "inspect_jwt", "parse_dotenv", "pip_check",
           "secret_facts", "type_problem", "webhook_facts"]

BOOL = {"1": True, "true": True, "yes": True, "on": True,
        "0": False, "false": False, "no": False, "off": False, "": False}

_HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
_MAX_TOKEN = 16_384  # bytes; a bigger "token" is a mistake, not a JWT


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _claims(payload: dict[str, Any]) -> dict[str, Any]:
    """Time claims and the issuer/audience, never `sub` or custom data."""
    return {c: payload[c] if c in ("exp", "nbf", "iat") else str(payload[c])[:200]
            for c in ("exp", "nbf", "iat", "iss", "aud") if c in payload
            and (c in ("iss", "aud") or type(payload[c]) in (int, float))}


def _verify_asymmetric(alg: str, pem: bytes, signing_input: bytes, signature: bytes) -> bool:
    """True if `signature` verifies with the PEM public key; ValueError for a key that
    cannot be loaded or does not fit `alg`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

    key = serialization.load_pem_public_key(pem)
    digest: hashes.HashAlgorithm | None = {"256": hashes.SHA256(), "384": hashes.SHA384(),
                                           "512": hashes.SHA512()}.get(alg[2:])
    try:
        if alg.startswith(("RS", "PS")) and isinstance(key, rsa.RSAPublicKey) and digest:
            pad = padding.PKCS1v15() if alg.startswith("RS") else padding.PSS(
                mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            key.verify(signature, signing_input, pad, digest)
        elif alg.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey) and digest:
            size = len(signature) // 2
            der = utils.encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                             int.from_bytes(signature[size:], "big"))
            key.verify(der, signing_input, ec.ECDSA(digest))
        elif alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signing_input)
        else:
            raise ValueError(f"the public key ({type(key).__name__}) does not fit {alg}")
    except InvalidSignature:
        return False
    return True


def inspect_jwt(token: str, *, algorithms: list[str], hmac_secret: bytes | None,
                secret_name: str | None, pem_file: str | None) -> dict[str, Any]:
    """Facts about one token: {format, alg, typ, kid, claims, verification, reason}."""
    facts: dict[str, Any] = {"format": "jws", "alg": None, "claims": {},
                             "verification": "malformed", "reason": None}
    parts = token.strip().split(".")
    if len(token) > _MAX_TOKEN or len(parts) != 3:
        facts.update(format="malformed", reason=f"not a JWS compact token ({len(parts)} "
                     "dot-separated parts, expected 3)" if len(token) <= _MAX_TOKEN
                     else f"longer than {_MAX_TOKEN} bytes")
        return facts
    try:
        header = json.loads(_b64url(parts[0]))
        payload = json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
        if not isinstance(header, dict) or not isinstance(payload, dict):
            raise ValueError("header or payload is not a JSON object")
    except (ValueError, binascii.Error) as err:  # JSONDecodeError and UnicodeError too
        facts.update(format="malformed", reason=f"undecodable: {type(err).__name__}")
        return facts
    alg = str(header.get("alg"))[:20]
    facts.update(alg=alg, typ=str(header.get("typ", ""))[:20] or None,
                 kid=str(header["kid"])[:100] if "kid" in header else None,
                 claims=_claims(payload))
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii", "replace")
    reason: str | None
    if alg.lower() == "none":
        verification, reason = "unsigned", "alg is none: the token carries no signature"
    elif alg not in algorithms:
        verification = "not_allowed"
        reason = f"signed with {alg}, the app accepts {', '.join(algorithms)}"
    elif alg.startswith("HS") and alg[2:] in _HASHES:
        if hmac_secret is None:
            verification = "unverifiable"
            reason = f"{secret_name} is not set" if secret_name else "no secret_env configured"
        else:
            expected = hmac.new(hmac_secret, signing_input, _HASHES[alg[2:]]).digest()
            ok = hmac.compare_digest(expected, signature)
            verification = "valid" if ok else "invalid"
            reason = None if ok else "the signature does not match the configured secret"
    elif pem_file is None:
        verification = "unverifiable"
        reason = "cannot verify asymmetric tokens without the public key"
    else:
        try:
            ok = _verify_asymmetric(alg, read_bytes_capped(pem_file, 64 << 10), signing_input,
                                    signature)
            verification = "valid" if ok else "invalid"
            reason = None if ok else "the signature does not match the public key"
        except OSError as err:
            verification, reason = "unverifiable", f"cannot read {pem_file}: {err.strerror}"
        except (ValueError, TypeError) as err:
            verification, reason = "unverifiable", str(err)[:200]
    facts.update(verification=verification, reason=reason)
    return facts


_PREFIXED = re.compile(r"^(?P<alg>sha1|sha256|sha384|sha512)=(?P<digest>.+)$", re.IGNORECASE)


def parse_signature(text: str, default_algorithm: str) -> tuple[str, bytes] | None:
    """(algorithm, digest bytes) from `sha256=<hex>`, bare hex or base64; None if neither."""
    text, algorithm = text.strip(), default_algorithm
    if match := _PREFIXED.match(text.strip()):
        algorithm, text = match["alg"].lower(), match["digest"]
    size = hashlib.new(algorithm).digest_size
    if re.fullmatch(r"[0-9a-fA-F]+", text) and len(text) == 2 * size:
        return algorithm, bytes.fromhex(text)
    try:
        digest = base64.b64decode(text.replace("-", "+").replace("_", "/")
                                  + "=" * (-len(text) % 4), validate=True)
    except (ValueError, binascii.Error):
        return None
    return (algorithm, digest) if len(digest) == size else None


def hmac_matches(secret: bytes, body: bytes, algorithm: str, digest: bytes) -> bool:
    """Constant-time comparison of HMAC(secret, body) with `digest`."""
    return hmac.compare_digest(hmac.new(secret, body, algorithm).digest(), digest)


def webhook_facts(name: str, payload_file: str, signature: str, algorithm: str,
                  secret: str | None, secret_env: str) -> dict[str, Any]:
    """Does `signature` verify for the payload with the secret; if not, which near miss
    does (that says what changed between the sender and the receiver)."""
    facts: dict[str, Any] = {"name": name, "payload_file": payload_file,
                             "verified_with": secret_env, "algorithm": algorithm,
                             "matches_when": []}
    try:
        body = read_bytes_capped(payload_file, 1 << 20)
    except OSError as err:
        return {**facts, "verification": "unverifiable",
                "reason": f"cannot read {payload_file}: {err.strerror or err}"}
    facts["payload_bytes"] = len(body)
    if secret is None:
        return {**facts, "verification": "unverifiable", "reason": f"{secret_env} is not set"}
    register_secret(secret)
    parsed = parse_signature(signature, algorithm)
    if parsed is None:
        return {**facts, "verification": "malformed", "reason": "the signature is not "
                f"sha256=<hex>, hex or base64 of a {algorithm} digest"}
    algorithm, digest = parsed
    facts["algorithm"] = algorithm
    if hmac_matches(secret.encode(), body, algorithm, digest):
        return {**facts, "verification": "valid"}
    variants = [("without the trailing newline", body.rstrip(b"\r\n"), secret),
                ("with a trailing newline", body + b"\n", secret),
                ("with the secret trimmed of whitespace", body, secret.strip())]
    try:
        doc = json.loads(body)
        variants += [("as compact JSON", json.dumps(doc, separators=(",", ":")).encode(), secret),
                     ("as JSON re-serialized with spaces", json.dumps(doc).encode(), secret)]
    except ValueError:
        pass
    seen = {(body, secret)}  # a variant equal to the original or an earlier one says nothing
    for label, alt, key in variants:
        if (alt, key) not in seen and hmac_matches(key.encode(), alt, algorithm, digest):
            facts["matches_when"].append(label)
        seen.add((alt, key))
    return {**facts, "verification": "invalid",
            "reason": "the signature does not match the payload and secret"}


# --- secrets --------------------------------------------------------------------------

# Values shipped in .env.example files, framework docs and tutorials (jwt.io's own sample
# secret, express-session's "keyboard cat"): a secret equal to one is public.
_PLACEHOLDERS = {"changeme", "change-me", "change_me", "secret", "your-secret-here",
                 "your_secret_here", "yoursecret", "your-secret", "dev", "development", "test",
                 "testing", "password", "default", "example", "placeholder", "todo", "xxx",
                 "supersecret", "super-secret", "mysecret", "my-secret", "secretkey",
                 "secret-key", "secret_key", "jwt-secret", "jwt_secret", "insecure", "shhhhh",
                 "keyboard cat", "your-256-bit-secret", "notasecret", "s3cr3t", "12345678"}
_PLACEHOLDER_PARTS = ("changeme", "change-me", "change_me", "replace-me", "replace_me",
                      "your-secret", "your_secret", "django-insecure-")


def secret_facts(name: str, min_length: int, used_by: str, value: str | None,
                 source: str | None) -> dict[str, Any]:
    """Length, variety and whether it is a known default; never the value or a hash."""
    facts: dict[str, Any] = {"variable": name, "min_length": min_length, "used_by": used_by,
                             "set": value is not None, "source": source or "missing"}
    if value is not None:
        register_secret(value)
        norm = value.strip().lower()
        facts.update(length=len(value), whitespace=value != value.strip(),
                     placeholder=norm in _PLACEHOLDERS
                     or any(p in norm for p in _PLACEHOLDER_PARTS))
    return facts


def dry_run_facts(values: Mapping[str, str], flags: list[str | None], endpoints: list[str],
                  markers: list[str]) -> dict[str, Any]:
    """The flags read as booleans, and the host (only: paths and queries may hold keys)
    each endpoint variable points at, with the mock marker it contains if any."""
    def flag(name: str | None) -> dict[str, Any] | None:
        word = values.get(name or "", "").strip().lower()
        return None if name is None else {"variable": name, "set": name in values,
                                          "on": BOOL.get(word, False), "valid": word in BOOL}

    out: list[dict[str, Any]] = []
    for name in endpoints:
        if name not in values:
            out.append({"variable": name, "set": False})
            continue
        parts = urlsplit(values[name].strip())
        where = (parts.netloc.rsplit("@", 1)[-1] + parts.path if parts.netloc
                 else values[name]).lower()
        marker = next((m for m in markers if m.lower() in where), None)
        out.append({"variable": name, "set": True, "host": parts.hostname or "(not a URL)",
                    "mock": marker is not None, "marker": marker})
    return {"flag": flag(flags[0]), "mock_flag": flag(flags[1]), "endpoints": out}


# --- env files, as python-dotenv reads them -------------------------------------------

_END = re.compile(r"[ \t]*(?:#[^\r\n]*)?(?:\r\n|\n|\r|\Z)")
_ASSIGN = re.compile(r"[ \t]*(?:export[ \t]+)?(?P<key>'[^']*'|[^=#\s'\"]+)[ \t]*(?P<eq>=)?[ \t]*")
_REST = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)?")
_SINGLE = re.compile(r"'((?:\\'|[^'])*)'")
_DOUBLE = re.compile(r'"((?:\\"|[^"])*)"')
_UNQUOTED = re.compile(r"[^\r\n]*")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f", "n": "\n",
            "r": "\r", "t": "\t", "v": "\v"}
_EXPAND = re.compile(r"\$\{(?P<name>[^}:]+)(?::-(?P<default>[^}]*))?\}")


def parse_dotenv(text: str, environ: Mapping[str, str]
                 ) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """(values, malformed lines as {line, reason}). `${VAR}` expands as python-dotenv
    does (process environment first, then earlier lines), never inside single quotes;
    a malformed statement is skipped to the end of its line, as python-dotenv skips it."""
    values: dict[str, str] = {}
    malformed: list[dict[str, Any]] = []
    pos, line, counted = 0, 1, 0
    while pos < len(text):
        line, counted = line + text.count("\n", counted, pos), pos
        if (blank := _END.match(text, pos)) and blank.end() > pos:
            pos = blank.end()
            continue
        assign, reason = _ASSIGN.match(text, pos), None
        if assign is None:
            reason = "no variable name before '='"
        elif assign["eq"] is None:
            reason = ("no '=' after the name (python-dotenv loads nothing for it)"
                      if _END.match(text, assign.end())
                      else "text after the name that is not '=' (a space in the name?)")
        else:
            end, value, reason = _value(text, assign.end(), values, environ)
            if reason is None:
                if after := _END.match(text, end):
                    values[assign["key"].strip("'")] = value
                    pos = after.end()
                    continue
                reason = "text after the closing quote"
        malformed.append({"line": line, "reason": reason})
        rest = _REST.match(text, pos)
        pos = rest.end() if rest and rest.end() > pos else len(text)
    return values, malformed


def _value(text: str, pos: int, values: Mapping[str, str],
           environ: Mapping[str, str]) -> tuple[int, str, str | None]:
    """(end, value, why it is malformed or None) of the value starting at `pos`."""
    def lookup(m: re.Match[str]) -> str:
        found = environ.get(m["name"], values.get(m["name"]))
        return found if found is not None else (m["default"] or "")

    quote = text[pos:pos + 1]
    if quote in ("'", '"'):
        match = (_SINGLE if quote == "'" else _DOUBLE).match(text, pos)
        if match is None:
            return pos, "", f"unterminated {quote} quote"
        if quote == "'":
            return match.end(), re.sub(r"\\([\\'])", r"\1", match[1]), None
        inner = re.sub(r"\\([\\'\"abfnrtv])", lambda m: _ESCAPES[m[1]], match[1])
        return match.end(), _EXPAND.sub(lookup, inner), None
    raw = _UNQUOTED.match(text, pos)
    end = raw.end() if raw else pos
    return end, _EXPAND.sub(lookup, re.sub(r"\s+#.*", "", text[pos:end]).rstrip()), None


def _port(value: str) -> None:
    if not 1 <= int(value) <= 65535:
        raise ValueError(value)


_TYPES: dict[str, tuple[Callable[[str], object], str]] = {
    "int": (int, "is not an integer"), "float": (float, "is not a number"),
    "json": (json.loads, "is not valid JSON"), "port": (_port, "is not a port (1-65535)")}


def type_problem(kind: str, value: str) -> str | None:
    """Why `value` is not a `kind`, in words that never quote it; None if it is."""
    value = value.strip()
    if value == "":
        return "is set but empty"
    if kind == "bool" and value.lower() not in BOOL:
        return "is not a boolean (true/false, 1/0, yes/no, on/off)"
    if kind == "url":
        parts = urlsplit(value)
        return None if parts.scheme and parts.netloc else "is not a URL with a scheme and host"
    if kind in _TYPES:
        try:
            _TYPES[kind][0](value)
        except ValueError:
            return _TYPES[kind][1]
    return None


# --- pip check ------------------------------------------------------------------------

_PIP = {"missing": re.compile(r"(?P<package>\S+) (?P<version>\S+) requires "
                              r"(?P<requirement>.+), which is not installed\.$"),
        "conflict": re.compile(r"(?P<package>\S+) (?P<version>\S+) has requirement "
                               r"(?P<requirement>.+), but you have (?P<installed>.+)\.$"),
        "platform": re.compile(r"(?P<package>\S+) (?P<version>\S+) is not supported on")}


def pip_check(python: str, timeout: float, cap: int) -> dict[str, Any]:
    """{outcome: ok|broken|no_pip|timeout|error, returncode, problems, output_tail}."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONIOENCODING="utf-8")
    try:
        proc = subprocess.Popen([python, "-m", "pip", "check"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    except OSError as err:
        return {"outcome": "error", "problems": [],
                "error": f"cannot run {python}: {err.strerror or err}"}
    kept = bytearray()

    def pump() -> None:  # keep `cap` bytes, drain the rest so the child never blocks
        assert proc.stdout is not None
        while chunk := os.read(proc.stdout.fileno(), 65536):
            kept.extend(chunk[:max(0, cap - len(kept))])

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        returncode = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # pip check starts no children of its own
        proc.wait()
        return {"outcome": "timeout", "problems": [],
                "error": f"pip check did not finish within {timeout:.1f}s"}
    reader.join(timeout=1.0)
    lines = bytes(kept).decode("utf-8", "replace").splitlines()
    problems = [{"kind": kind, **m.groupdict()} for text in lines
                for kind, pattern in _PIP.items() if (m := pattern.match(text.strip()))]
    no_pip = any("No module named pip" in text for text in lines)
    outcome = ("ok" if returncode == 0 else "no_pip" if no_pip
               else "broken" if problems else "error")
    return {"outcome": outcome, "returncode": returncode, "problems": problems[:100],
            "truncated": len(kept) >= cap, "output_tail": "\n".join(lines[-10:])[-2000:]}
