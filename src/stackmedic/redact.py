"""Redaction: the one function every renderer, log line and stored record goes through.

Three layers, because each catches what the others miss:

1. by key: the value of any key named like a secret (`*password*`, `*secret*`,
   `*token*`, `*_key`, `authorization`, `cookie`) is replaced whole;
2. by shape: the password in a URL/DSN (`scheme://user:PASSWORD@host`), `password=…`,
   `PGPASSWORD=…` and `token: …` pairs, `--password VALUE` flags, Redis `AUTH …` and
   `requirepass …` lines, and `Bearer`/`Basic` credentials inside text, whatever the
   value is;
3. by value: secrets the config or environment revealed (an interpolated
   `${DB_PASSWORD}`, a `token:` in the stack file, any secret-named environment
   variable) are registered and removed wherever they appear, even inside an error
   message a server echoed back.

Layer 3 only takes values that cannot be mistaken for ordinary text: at least 8
characters and not a bare word or number, or at least 16 characters of anything.
Masking a short or plain-word password (`redis`, `wrong`, `postgres`, `changeme`)
everywhere turned `redis-cli` into `***-cli` and prose into nonsense; such values
are still masked wherever layers 1 and 2 find them. CI systems draw the same line
(Azure Pipelines' AZP_IGNORE_SECRETS_SHORTER_THAN, Airflow's MIN_SECRET_LENGTH,
Ansible masking 4-6 character values only on word boundaries); ours is stricter
because the default passwords people really use are 8-letter words.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "forget_secrets", "is_distinctive", "is_secret_key", "redact", "redact_text",
           "register_secret", "register_url_secrets"]

MASK = "***"
_MIN_DISTINCT_LEN = 8  # with a digit or symbol in it: "hunter22", "s3cr3t-x"
_MIN_PLAIN_LEN = 16  # letters or digits only: a passphrase, not "password"/"12345678"

_SECRET_KEY = re.compile(
    r"(^|[_\-.])pass(wd)?$|password|secret|token|(^|[_\-.])key$|^apikey$|^authorization$|"
    r"^proxy-authorization$|cookie|credential|private|requirepass|masterauth",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/?#@\s]*:)(?P<pw>[^@\s/]+)(?=@)",
                           re.IGNORECASE)
# `PGPASSWORD=…` and `REDISCLI_AUTH=…` too: an environment assignment in a command.
_KV_PASSWORD = re.compile(r"(?P<head>\b(?:\w*?(?:password|passwd|secret|token|api_?key)|pwd|"
                          r"requirepass|masterauth|rediscli_auth)"
                          r"['\"]?\s*[=:]\s*)(?P<q>['\"]?)(?P<pw>[^'\"\s&;,]+)(?P=q)",
                          re.IGNORECASE)
# `--password VALUE`, `--requirepass=VALUE` in command lines the process checks report.
_FLAG_PASSWORD = re.compile(r"(?P<head>(?<![\w-])--?[\w-]*(?:pass(?:word|wd)?|secret|token|"
                            r"requirepass|masterauth|api[-_]?key)(?:\s+|=))(?P<pw>[^\s'\"]+)",
                            re.IGNORECASE)
# Redis `AUTH [user] PW` (both words masked: one alone may be the password) and
# `requirepass PW` as a redis.conf line or in `CONFIG SET`; a runbook's placeholder
# (`NEW_PASSWORD`, `$REDIS_PASSWORD`, `<password>`) stays readable.
_DIRECTIVE = re.compile(r"(?P<head>(?:\bAUTH|(?:^[ \t]*|\bCONFIG[ \t]+SET[ \t]+)"
                        r"(?i:requirepass|masterauth))[ \t]+)(?![A-Z_]*PASSWORD\b|[$<])"
                        r"(?P<pw>[^\s'\"`]+(?:[ \t]+[^\s'\"`]+)?)", re.MULTILINE)
_AUTH_HEADER = re.compile(r"(?P<head>\b(?:Bearer|Basic|Token)\s+)(?P<pw>[A-Za-z0-9._~+/=\-]{6,})")

_known: set[str] = set()
_known_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def is_secret_key(key: str) -> bool:
    """True if a mapping key names a secret (its value must never be shown)."""
    return bool(_SECRET_KEY.search(key))


def is_distinctive(value: str) -> bool:
    """True if `value` is unusual enough to mask wherever it appears (see the module doc)."""
    plain = value.isalpha() or value.isdigit()
    return len(value) >= (_MIN_PLAIN_LEN if plain else _MIN_DISTINCT_LEN)


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is masked wherever it later appears, if it is
    distinctive enough not to collide with ordinary text; shapes cover the rest."""
    global _known_pattern
    if not value or not is_distinctive(value):
        return
    with _lock:
        if value not in _known:
            _known.add(value)
            _known_pattern = re.compile("|".join(
                re.escape(v) for v in sorted(_known, key=len, reverse=True)))


def forget_secrets() -> None:
    """Drop registered secrets (tests; a long-lived process loading a new config)."""
    global _known_pattern
    with _lock:
        _known.clear()
        _known_pattern = None


def register_url_secrets(text: str) -> None:
    """Register the passwords inside any URLs/DSNs in `text` (`scheme://user:PW@host`)."""
    if "://" in text:
        for match in _URL_PASSWORD.finditer(text):
            register_secret(match["pw"])


def register_environment_secrets(environ: Mapping[str, str] | None = None) -> None:
    """Register the values of secret-named environment variables."""
    for name, value in (os.environ if environ is None else environ).items():
        if is_secret_key(name):
            register_secret(value)


def redact_text(text: str) -> str:
    """Mask credentials inside free text (URLs, DSNs, headers, known secret values)."""
    if _known_pattern is not None:
        text = _known_pattern.sub(MASK, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    text = _FLAG_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    text = _DIRECTIVE.sub(lambda m: m["head"] + MASK, text)
    text = _KV_PASSWORD.sub(lambda m: m["head"] + m["q"] + MASK + m["q"], text)
    return _AUTH_HEADER.sub(lambda m: m["head"] + MASK, text)


def redact(value: Any) -> Any:
    """A copy of `value` (any JSON-like structure) with every secret masked."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: (MASK if isinstance(k, str) and is_secret_key(k) and v not in (None, "")
                    else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value
