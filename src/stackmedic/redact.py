"""Redaction: the one function every renderer, log line and stored record goes through.

Three layers, because each catches what the others miss:

1. by key: the value of any key named like a secret (`*password*`, `*secret*`,
   `*token*`, `*_key`, `authorization`, `cookie`) is replaced whole;
2. by shape: the password in a URL/DSN (`scheme://user:PASSWORD@host`), `password=…`,
   `PGPASSWORD=…`, `MYSQL_PWD=…`, `pass: …` and `token: …` pairs, `--password VALUE`
   flags, Redis `AUTH …` and `requirepass …` lines (plain or quoted by MONITOR), and
   `Bearer`/`Basic` credentials inside text, whatever the value is;
3. by value: secrets the config or environment revealed (an interpolated
   `${DB_PASSWORD}`, a `token:` in the stack file, any secret-named environment
   variable) are registered and removed wherever they appear, even inside an error
   message a server echoed back.

Layer 3 masks inside any text only values that cannot be mistaken for ordinary text:
at least 8 characters and not a bare word or number, or at least 16 characters of
anything. Masking a short or plain-word password (`redis`, `wrong`, `postgres`,
`changeme`) everywhere turned `redis-cli` into `***-cli` and prose into nonsense, so
a shorter one is masked only as a whole token when it is no bare word or number
(`hunter2`, `S3cret!`: an app's "login failed: hunter2" must not show it), and a
plain word only right after `password`/`secret`/`token` ("with password wrong");
layers 1 and 2 mask both wherever they find them. CI systems draw the same line
(Azure Pipelines' AZP_IGNORE_SECRETS_SHORTER_THAN, Airflow's MIN_SECRET_LENGTH,
Ansible masking 4-6 character values only on word boundaries); ours is stricter
because the default passwords people really use are 8-letter words.
"""

from __future__ import annotations

import base64
import os
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

__all__ = ["MASK", "forget_secrets", "is_distinctive", "is_secret_key", "mask_sql_passwords",
           "redact", "redact_text", "register_secret", "register_url_secrets"]

MASK = "***"
_MIN_DISTINCT_LEN = 8  # with a digit or symbol in it: "hunter22", "s3cr3t-x"
_MIN_PLAIN_LEN = 16  # letters or digits only: a passphrase, not "password"/"12345678"
_MIN_TOKEN_LEN = 4  # shorter values are masked by shape only

_SECRET_KEY = re.compile(
    r"(^|[_\-.]|^pg)pass(wd)?$|[_\-.]pwd$|password|secret|token|(^|[_\-.])key$|^apikey$|^authorization$|"
    r"^proxy-authorization$|cookie|credential|private|requirepass|masterauth",
    re.IGNORECASE,
)
# The password runs to the last `@` before the host (`a@b` is one password).
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/?#@\s]*:)(?P<pw>[^\s/?#]+)(?=@)",
                           re.IGNORECASE)
# `PGPASSWORD=…` and `REDISCLI_AUTH=…` too: an environment assignment in a command.
# `DB_PASS=`, `PGPASS=`, `MYSQL_PWD=`, `REDIS_AUTH=`, `X-Api-Key:`, `aws_secret_access_key =`
# as well; a quoted value is masked up to its closing quote (spaces, commas and `\"`
# escapes included). A bare `pass` is a key only where prose cannot put it ("first pass:
# 3 rows", "pass rate: 98%"): starting a YAML/INI line, quoted as a JSON key, or in an
# unspaced logfmt/DSN `pass=`.
_KV_NAME = (r"\b(?:\w*?(?:password|passwd|passphrase|secret|token|_auth)|"
            r"(?:\w*_|pg)(?:pass|pwd)|[\w-]*?(?:api|access|secret|private)[-_]?key|pwd|"
            r"requirepass|masterauth)['\"]?\s*[=:]")
_BARE_PASS = (r"(?m:^)[ \t]*(?:-[ \t]+)?pass[ \t]*[=:]|(?P<kq>['\"])pass(?P=kq)[ \t]*:|"
              r"(?<![\w-])pass=")
_KV_PASSWORD = re.compile(rf"(?P<head>(?:{_KV_NAME}|{_BARE_PASS})\s*)(?:(?P<q>['\"])"
                          r"(?P<qpw>(?:\\.|(?!(?P=q)).)*)(?P=q)|(?P<pw>[^'\"\s&;,]+))",
                          re.IGNORECASE)
# `--password VALUE`, `--requirepass=VALUE` in command lines the process checks report.
_FLAG_PASSWORD = re.compile(r"(?P<head>(?<![\w-])--?[\w-]*(?:pass(?:word|wd)?|secret|token|"
                            r"requirepass|masterauth|api[-_]?key)(?:\s+|=))(?P<pw>[^\s'\"]+)",
                            re.IGNORECASE)
# `redis-cli -a PW` and `mysql -pPW` in the command lines process checks report, and a
# signed URL's `?key=`/`?sig=` (a bare `key=` elsewhere is no credential).
_CLI_PASSWORD = re.compile(r"(?P<head>\b(?:redis-(?:cli|benchmark)\b[^\n|;&]*?[ \t]-a[ \t]+|"
                           r"(?:mysql(?:dump|admin)?|mariadb)\b[^\n|;&]*?[ \t]-p(?=[^\s-])|"
                           r"[?&](?:key|sig|signature|auth)=))(?![$<])(?P<pw>[^\s'\"&#]+)")
# Redis `AUTH [user] PW` (both words masked: one alone may be the password) and
# `requirepass PW` as a redis.conf line or in `CONFIG SET`; a runbook's placeholder
# (`NEW_PASSWORD`, `$REDIS_PASSWORD`, `<password>`) stays readable.
# `MIGRATE … AUTH2 user PW` too; `ACL SETUSER name on >PW <PW` adds and drops passwords.
_DIRECTIVE = re.compile(r"(?P<head>(?:\bAUTH2?|(?:^[ \t]*|\b(?i:CONFIG[ \t]+SET)[ \t]+)"
                        r"(?i:requirepass|masterauth))[ \t]+)(?![A-Z_]*PASSWORD\b|[$<])"
                        r"(?P<pw>[^\s'\"`]+(?:[ \t]+[^\s'\"`]+)?)", re.MULTILINE)
# The same in MONITOR's output, which quotes every argument (`"AUTH" "default" "pw"`,
# `"CONFIG" "SET" "requirepass" "pw"`, a `"` escaped as `\"`) as the client sent it, in
# any case; an `ACL SETUSER` there is `"ACL" "SETUSER" "app" ">pw"`.
_QUOTED_ARG = r'"(?:[^"\\\n]|\\.)*"'
_MONITOR = re.compile(rf'(?P<head>"(?:AUTH2?|requirepass|masterauth)"[ \t]+)'
                      rf'{_QUOTED_ARG}(?:[ \t]+{_QUOTED_ARG})?', re.IGNORECASE)
_ACL_SETUSER = re.compile(r'\bACL"?[ \t]+"?SETUSER\b[^\n]*', re.IGNORECASE)
_ACL_PASSWORD = re.compile(r"(?<=[ \t\"])(?P<head>[<>])(?P<pw>[^\s'\"`]+)")
# SQL `PASSWORD 'literal'` (CREATE/ALTER ROLE, USER MAPPING options, a server log's
# `statement:` line); an E'' string may escape its quote with `\'`, and a literal cut
# by `left()` has no closing quote, hence the `$`. `PASSWORD'…'` (no space) is valid SQL
# too, but `password'` also ends a string ('new password'), and one match running from
# there would swallow the next literal's opening quote: the spaced form is masked first,
# so the second pass can only mask more.
_SQL_PASSWORD = tuple(re.compile(rf"(\bpassword\s{spaces})" r"(?:E'(?:[^'\\]|\\.|'')*(?:'|$)|"
                                 r"(?:U&)?'(?:[^']|'')*(?:'|$)|\$(\w*)\$.*?(?:\$\2\$|$))",
                                 re.IGNORECASE | re.DOTALL) for spaces in "+*")
# A `Cookie:`/`Set-Cookie:` header value is session credentials from end to end.
_COOKIE = re.compile(r"(?P<head>\b(?:set-)?cookie['\"]?\s*[:=]\s*['\"]?)(?P<pw>[^\r\n'\"]+)",
                     re.IGNORECASE)
_AUTH_HEADER = re.compile(r"(?P<head>\b(?:Bearer|Basic|Token)\s+)(?P<pw>[A-Za-z0-9._~+/=\-]{6,})")

# A plain-word secret is taken only right after a word that announces it, and never
# as part of a longer name (`redis-cli`, `redis://`, `redis.conf`).
_ANNOUNCED = r"\b(?i:password|passwd|passphrase|pwd|secret|token|auth)(?:\s+(?i:is|was))?\s+"
_WORD_END = r"(?![\w-]|[.:/@]\w)"

_known: set[str] = set()
_short: set[str] = set()
_known_pattern: re.Pattern[str] | None = None
_short_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def is_secret_key(key: str) -> bool:
    """True if a mapping key names a secret (its value must never be shown)."""
    return bool(_SECRET_KEY.search(key))


def is_distinctive(value: str) -> bool:
    """True if `value` is unusual enough to mask wherever it appears (see the module doc)."""
    plain = value.isalpha() or value.isdigit()
    return len(value) >= (_MIN_PLAIN_LEN if plain else _MIN_DISTINCT_LEN)


def _alternation(values: set[str]) -> str:
    return "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is masked wherever it later appears: anywhere if
    it is distinctive, else only where it cannot be part of ordinary text (module doc)."""
    global _known_pattern, _short_pattern
    if not value or len(value) < _MIN_TOKEN_LEN or value in _known or value in _short:
        return
    with _lock:
        if is_distinctive(value):
            _known.add(value)
            _known_pattern = re.compile(_alternation(_known))
            return
        _short.add(value)
        plain = {v for v in _short if v.isalpha() or v.isdigit()}
        _short_pattern = re.compile("|".join(
            [rf"(?P<head>{_ANNOUNCED})(?:{_alternation(plain)}){_WORD_END}"] * bool(plain) +
            [rf"(?<![\w-])(?:{_alternation(_short - plain)}){_WORD_END}"] * bool(_short - plain)))


def forget_secrets() -> None:
    """Drop registered secrets (tests; a long-lived process loading a new config)."""
    global _known_pattern, _short_pattern
    with _lock:
        _known.clear()
        _short.clear()
        _known_pattern = _short_pattern = None


def register_url_secrets(text: str) -> None:
    """Register the passwords inside any URLs/DSNs in `text` (`scheme://user:PW@host`):
    as written, percent-decoded (what the server and its errors see) and as the
    `Basic` credential an HTTP client sends, which a server may echo without `Basic`."""
    if "://" in text:
        for match in _URL_PASSWORD.finditer(text):
            user, password = unquote(match["head"].rsplit("/", 1)[1][:-1]), unquote(match["pw"])
            register_secret(match["pw"])
            register_secret(password)
            register_secret(base64.b64encode(f"{user}:{password}".encode()).decode())


def register_environment_secrets(environ: Mapping[str, str] | None = None) -> None:
    """Register the values of secret-named environment variables."""
    for name, value in (os.environ if environ is None else environ).items():
        if is_secret_key(name):
            register_secret(value)


def redact_text(text: str) -> str:
    """Mask credentials inside free text (URLs, DSNs, headers, known secret values)."""
    if _known_pattern is not None:
        text = _known_pattern.sub(MASK, text)
    if _short_pattern is not None:
        text = _short_pattern.sub(lambda m: (m.groupdict().get("head") or "") + MASK, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(_masked, text)
    text = _FLAG_PASSWORD.sub(_masked, text)
    text = _CLI_PASSWORD.sub(_masked, text)
    text = _DIRECTIVE.sub(_masked, text)
    text = _MONITOR.sub(lambda m: f'{m["head"]}"{MASK}"', text)
    text = _ACL_SETUSER.sub(lambda m: _ACL_PASSWORD.sub(_masked, m[0]), text)
    text = mask_sql_passwords(text)
    text = _KV_PASSWORD.sub(lambda m: m["head"] + (m["q"] or "") + MASK + (m["q"] or ""), text)
    text = _COOKIE.sub(_masked, text)
    return _AUTH_HEADER.sub(_masked, text)


def mask_sql_passwords(text: str) -> str:
    """`text` with SQL `PASSWORD '…'` literals masked (statements shown as evidence)."""
    for pattern in _SQL_PASSWORD:
        text = pattern.sub(r"\1'***'", text)
    return text


def _masked(match: re.Match[str]) -> str:
    return match["head"] + MASK


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
