"""Pure helpers the Redis rules share: numbers derived from recorded facts.

Rules must not raise on odd input from a server, so every helper here returns
None (or an empty value) instead of guessing when a fact is missing or malformed.
"""

from __future__ import annotations

import math
import shlex
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from stackmedic.checks import Facts

__all__ = ["as_float", "as_int", "cli_command", "delta", "human_bytes", "latest_info", "live",
           "mapping", "numbers", "percentile", "recent_records", "records", "server_now",
           "where"]


def live(facts: Facts) -> bool:
    """True when the collector talked to the server (no connection-level error)."""
    return facts.get("error") is None


def latest_info(facts: Facts) -> dict[str, Any] | None:
    """The most recent INFO sample (the second, else the first)."""
    for key in ("info_after", "info"):
        value = facts.get(key)
        if isinstance(value, dict):
            return value
    return None


def mapping(value: Any) -> dict[str, Any]:
    """`value` if it is a dict, else an empty one."""
    return value if isinstance(value, dict) else {}


def records(value: Any) -> list[dict[str, Any]]:
    """The dicts in `value` if it is a list (anything else counts as no records)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def numbers(value: Any) -> list[float]:
    """The finite numbers in `value` if it is a list."""
    items = value if isinstance(value, list) else []
    return [float(v) for v in items if isinstance(v, int | float) and math.isfinite(v)]


def as_int(value: Any) -> int | None:
    """An integer from an INFO/CONFIG value, None if it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
        return None


def as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def delta(facts: Facts, key: str) -> int | None:
    """How much counter `key` grew between the two INFO samples (None if unknown)."""
    before, after = facts.get("info"), facts.get("info_after")
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None
    first, second = as_int(before.get(key)), as_int(after.get(key))
    if first is None or second is None:
        return None
    return max(0, second - first)  # a restart between samples resets counters


def percentile(samples: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of `samples`, None when there are none."""
    values = sorted(samples)
    if not values:
        return None
    rank = max(1, math.ceil(q * len(values)))
    return float(values[rank - 1])


def server_now(facts: Facts) -> float:
    """The server's clock (INFO server_time_usec) in unix seconds, else ours: slow-log
    and latency timestamps are the server's, so compare them with its own clock."""
    info = latest_info(facts) or {}
    usec = as_int(info.get("server_time_usec"))
    return usec / 1e6 if usec else time.time()


def recent_records(facts: Facts, key: str, window: float) -> list[dict[str, Any]]:
    """The records under `key` stamped (`at`, unix seconds) within the last `window`
    seconds of the server's clock: the slow log's and LATENCY LATEST's entries."""
    since = server_now(facts) - window
    return [e for e in records(facts.get(key)) if (as_int(e.get("at")) or 0) >= since]


def human_bytes(size: float) -> str:
    """1536 → '1.5 KiB'."""
    if abs(size) < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if abs(size) < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} TiB"


def cli_command(url: str, user: str | None = None, *, password: bool = False,
                ca_file: str | None = None, as_admin: bool = False) -> str:
    """The `redis-cli …` prefix that reaches the server at `url`, for runbook commands.

    Not `redis-cli -u URL`: redis-cli rejects `unix://` URLs, and the URL we hold has
    its password masked as `***`, which redis-cli would send as the password. The
    password is never part of the command: `--askpass` prompts for it. `as_admin`
    leaves the user to fill in (`--user ADMIN`), for commands our user may not run.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "redis-cli"
    words = ["redis-cli"]
    if parts.scheme == "unix":
        words += ["-s", parts.path or "/path/to/redis.sock"]
    else:
        words += ["-h", parts.hostname or "127.0.0.1", "-p", str(port or 6379)]
    db = (parts.path.strip("/") if parts.scheme != "unix" else "") or \
        next((v for k, v in _query(parts.query) if k == "db"), "")
    if db.isdigit() and db != "0":
        words += ["-n", db]
    if parts.scheme == "rediss":
        words.append("--tls")
        if ca_file:
            words += ["--cacert", ca_file]
    if as_admin:
        words += ["--user", "ADMIN", "--askpass"]
    else:
        if user and user != "default":
            words += ["--user", user]
        if password or parts.password:
            words.append("--askpass")
    return " ".join(shlex.quote(word) for word in words)


def _query(query: str) -> list[tuple[str, str]]:
    return [(k, unquote(v)) for k, _, v in (p.partition("=") for p in query.split("&") if p)]


def where(facts: Facts) -> dict[str, Any]:
    """The evidence every Redis finding carries: the (redacted) target, its TCP port
    (for `ss` on the server when redis-cli cannot get in) and the `redis-cli` command
    prefix its runbook steps start with."""
    target = facts.get("target")
    cli = facts.get("cli")
    if not isinstance(cli, str):  # facts recorded before `cli` existed
        user = facts.get("user")
        cli = cli_command(str(target or ""), user if isinstance(user, str) else None)
    try:
        parts = urlsplit(str(target or ""))
        port = None if parts.scheme == "unix" or not parts.hostname else parts.port or 6379
    except ValueError:
        port = None
    return {"target": target, "port": port, "cli": cli}
