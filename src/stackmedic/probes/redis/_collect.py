"""The Redis collector: one connection, two INFO samples, PINGs, logs and key samples.

Facts are plain JSON-able dicts (see docs/redis.md for the shape). Expected failures
are facts: a refused or timed-out connection, a LOADING server, a rejected
password or a full `maxclients` end the collection with `error` set; a command the
ACL user may not run is listed under `denied` and the rest goes on.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from stackmedic import redact
from stackmedic.checks import CollectContext, Facts
from stackmedic.probes.redis import RedisComponent, probe
from stackmedic.probes.redis._client import (
    ForbiddenCommandError,
    SafeClient,
    connect,
    describe_error,
    unsolicited_reply,
)
from stackmedic.probes.redis._derive import as_int, cli_command

# INFO fields the rules read; the rest of INFO stays on the server (facts stay small).
INFO_KEYS = (
    "redis_version", "run_id", "uptime_in_seconds", "server_time_usec", "config_file",
    "connected_clients", "blocked_clients", "maxclients",
    "used_memory", "used_memory_rss", "used_memory_peak", "maxmemory", "maxmemory_policy",
    "total_system_memory", "mem_fragmentation_ratio", "mem_fragmentation_bytes",
    "mem_not_counted_for_evict", "mem_clients_normal", "used_memory_dataset",
    "loading", "rdb_changes_since_last_save", "rdb_bgsave_in_progress", "rdb_last_save_time",
    "rdb_last_bgsave_status", "aof_enabled", "aof_rewrite_in_progress",
    "aof_last_bgrewrite_status", "aof_last_write_status",
    "total_connections_received", "rejected_connections", "evicted_keys", "keyspace_hits",
    "keyspace_misses", "instantaneous_ops_per_sec",
    "role", "connected_slaves", "master_host", "master_port", "master_link_status",
    "master_last_io_seconds_ago", "master_link_down_since_seconds", "master_sync_in_progress",
    "master_repl_offset", "slave_repl_offset",
)
CONFIG_KEYS = ("maxmemory", "maxmemory-policy", "maxclients", "save", "appendonly", "dir",
               "dbfilename", "slowlog-log-slower-than", "latency-monitor-threshold")
_SLAVE = re.compile(r"^slave\d+$")
_CONTAINER_COMMANDS = {"ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION",
                       "LATENCY", "MEMORY", "MODULE", "OBJECT", "SCRIPT", "SLOWLOG", "XINFO"}
_MAX_ITEMS = 10  # evidence lists are capped at this many samples
_KEEP_PER_TYPE = 3  # largest keys remembered per type during sampling
_KEY_CHARS = 1024  # key names longer than this are shown cut (and cannot be pasted)


class _Lost(Exception):
    """The connection failed mid-run: stop collecting, keep what we have."""


class _Session:
    """Runs allowlisted commands, recording ACL denials and connection loss as facts."""

    def __init__(self, client: SafeClient, facts: Facts) -> None:
        self.client = client
        self.facts = facts

    def ask(self, *args: Any) -> Any:
        """The reply, or None when the ACL user may not run the command."""
        try:
            return self.client.call(*args)
        except Exception as err:
            return self._failed(err, args)

    def batch(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Replies of one pipelined round trip; a failed command's reply is its error."""
        try:
            return self.client.batch(commands)
        except Exception as err:
            self._failed(err, commands[0] if commands else ("PIPELINE",))
            return [None] * len(commands)

    def _failed(self, err: Exception, args: tuple[Any, ...]) -> None:
        if isinstance(err, ForbiddenCommandError):
            raise err  # a bug in this module, never a fact about the server
        error = describe_error(err)
        if error["kind"] == "noperm":
            self.facts["denied"].append(" ".join(str(a) for a in args[:2]).upper())
            return None
        if error["kind"] == "error":  # the server answered with an error: note it, go on
            if len(self.facts["errors"]) < _MAX_ITEMS:
                self.facts["errors"].append(error)
            return None
        # Which command lost the connection: after INFO was read, an oversized reply
        # is a large key or list, not a server that is not Redis.
        self.facts["error"] = error | {"command": _command(args)}
        raise _Lost from err


@probe.collector("server", timeout=8.0)
def collect(component: RedisComponent, ctx: CollectContext) -> Facts:
    """One connection: PING, INFO twice, CONFIG, SLOWLOG, LATENCY, clients, big keys."""
    parts = urlsplit(component.url)
    facts: Facts = {
        "target": redact.redact_text(component.url),
        "user": component.username or parts.username or "default",
        "error": None, "errors": [], "denied": [],
    }
    facts["cli"] = cli_command(component.url, facts["user"],
                               password=component.password is not None,
                               ca_file=component.tls_ca_file)
    # Half the time left per command: a server that never answers still leaves time
    # to report the timeout as a fact instead of the runner cancelling us.
    client = connect(component, timeout=max(0.05, min(2.0, ctx.remaining() / 2)))
    try:
        _collect(_Session(client, facts), component, ctx)
    except _Lost:
        pass  # `error` is set; what was gathered before still goes to the rules
    finally:
        client.close()
    return facts


def _collect(session: _Session, component: RedisComponent, ctx: CollectContext) -> None:
    facts = session.facts
    try:
        session.client.call("PING")  # a connect or AUTH failure surfaces here
    except Exception as err:
        facts["error"] = describe_error(err)
        if facts["error"]["kind"] == "connection":
            said = unsolicited_reply(component.url, min(0.3, ctx.remaining()))
            if said:
                facts["error"] = describe_error(ConnectionError(said))
        return
    before = session.ask("INFO")
    facts["info"] = _info(before) if isinstance(before, dict) else None
    config = session.ask("CONFIG", "GET", *CONFIG_KEYS)  # a flat [name, value, …] list
    facts["config"] = {_text(k): _text(v) for k, v in zip(config[::2], config[1::2],
                                                          strict=True)} \
        if isinstance(config, list) and len(config) % 2 == 0 else None
    interval = min(component.sample_interval_s, max(0.0, ctx.remaining() - 1.0))
    started = time.monotonic()
    facts["rtt_ms"] = _ping_samples(session, component.rtt_samples, interval)
    after = session.ask("INFO")
    facts["interval_s"] = round(time.monotonic() - started, 4)
    facts["info_after"] = _info(after) if isinstance(after, dict) else None
    facts["counters"] = _counters(facts["info_after"])
    facts["slowlog"] = _slowlog(session.ask("SLOWLOG", "GET", 128))
    facts["latency"] = _latency(session.ask("LATENCY", "LATEST"))
    blocked = (facts["info_after"] or {}).get("blocked_clients", 0)
    facts["blocked"] = _blocked(session.ask("CLIENT", "LIST")) if blocked else []
    budget = min(component.bigkey_budget_s, max(0.0, ctx.remaining() - 0.5))
    facts["bigkeys"] = _bigkeys(session, component, budget) \
        if component.max_keys and budget > 0 else None


def _ping_samples(session: _Session, count: int, interval: float) -> list[float]:
    """Round trips in ms, spread over the sampling interval (which they fill)."""
    samples = []
    pause = interval / count
    for _ in range(count):
        start = time.perf_counter()
        session.ask("PING")
        samples.append(round((time.perf_counter() - start) * 1000, 3))
        time.sleep(pause)
    return samples


def _counters(info: Facts | None) -> Facts | None:
    """For the doctor's history: what the next run counts "since the last run" (a
    restart changes run_id; CONFIG RESETSTAT shows as counters going backwards)."""
    if not info or not info.get("run_id"):
        return None
    return {"epoch": str(info["run_id"]),
            **{key: info[key] for key in ("evicted_keys", "rejected_connections")
               if isinstance(info.get(key), int)}}


def _info(info: dict[str, Any]) -> Facts:
    out: Facts = {key: info[key] for key in INFO_KEYS if key in info}
    out["replicas"] = [_plain(info[key]) for key in sorted(info) if _SLAVE.match(key)
                       and isinstance(info[key], dict)][:_MAX_ITEMS]
    out["errorstats"] = {key[len("errorstat_"):]: _plain(value).get("count", 0)
                         for key, value in info.items()
                         if key.startswith("errorstat_") and isinstance(value, dict)}
    out["keyspace"] = {key: _plain(value) for key, value in info.items()
                       if re.fullmatch(r"db\d+", key) and isinstance(value, dict)}
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {_text(k): _plain(v) for k, v in value.items()}
    return _text(value) if isinstance(value, bytes) else value


def _text(value: Any, limit: int = 200) -> str:
    raw = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)
    return raw if len(raw) <= limit else raw[:limit] + "…"


def _slowlog(reply: Any) -> list[Facts] | None:
    """Slow-log entries with command name (and subcommand), never the arguments.

    Each raw entry is [id, unix time, duration µs, [argv…], client addr, client name].
    """
    if not isinstance(reply, list):
        return None
    entries = []
    for entry in reply:
        if not isinstance(entry, list) or len(entry) < 4 or not isinstance(entry[3], list):
            continue
        name = _command(entry[3])
        entries.append({"id": entry[0], "at": entry[1], "duration_us": entry[2],
                        "command": name or "?",
                        "args": max(0, len(entry[3]) - len(name.split())),
                        "client": _text(entry[4]) if len(entry) > 4 else "",
                        "client_name": _text(entry[5]) if len(entry) > 5 else ""})
    return entries


def _command(args: Sequence[Any]) -> str:
    """A command's name without its arguments: `SCAN`, `CONFIG GET`."""
    words = [_text(word, 64).upper() for word in args[:2]]
    return " ".join(words[:2] if words and words[0] in _CONTAINER_COMMANDS else words[:1])


def _latency(reply: Any) -> list[Facts] | None:
    """LATENCY LATEST rows: event, unix time of the latest spike, latest and max ms."""
    if not isinstance(reply, list):
        return None
    rows = []
    for row in reply[:50]:
        if not isinstance(row, list | tuple) or len(row) < 4:
            continue
        numbers = [as_int(_text(value)) for value in row[1:4]]
        if None not in numbers:  # a reply we cannot read costs its row, not the run
            rows.append({"event": _text(row[0]), "at": numbers[0], "latest_ms": numbers[1],
                         "max_ms": numbers[2]})
    return rows


def _blocked(reply: Any) -> list[Facts]:
    """Clients blocked in a command (flag `b`), as CLIENT LIST describes them."""
    if not isinstance(reply, list | str | bytes):
        return []
    rows = reply if isinstance(reply, list) else [
        dict(field.split("=", 1) for field in line.split() if "=" in field)
        for line in _text(reply, 1_000_000).splitlines()]
    blocked = []
    for row in rows:
        row = _plain(row)
        if isinstance(row, dict) and "b" in str(row.get("flags", "")):
            blocked.append({key: row.get(key) for key in
                            ("id", "addr", "name", "user", "db", "cmd", "age", "idle")})
    return blocked[:_MAX_ITEMS]


def _bigkeys(session: _Session, component: RedisComponent, budget: float) -> Facts:
    """SCAN + TYPE + MEMORY USAGE over at most `max_keys` keys and `budget` seconds."""
    deadline = time.monotonic() + budget
    started = time.monotonic()
    largest: dict[str, list[tuple[int, str]]] = {}
    per_type: dict[str, dict[str, Any]] = {}
    cursor: int | None = 0
    scanned = 0
    complete = False
    while scanned < component.max_keys and time.monotonic() < deadline:
        reply = session.ask("SCAN", cursor, "COUNT", component.scan_count)
        if not isinstance(reply, list | tuple) or len(reply) != 2:
            break
        cursor, keys = as_int(_text(reply[0])), reply[1]
        if cursor is None or not isinstance(keys, list):
            break
        keys = keys[:component.max_keys - scanned]
        replies = session.batch(
            [cmd for key in keys for cmd in (("TYPE", key), ("MEMORY", "USAGE", key))])
        for i, key in enumerate(keys):
            kind, size = _text(replies[2 * i]), replies[2 * i + 1]
            if not isinstance(size, int):  # expired between SCAN and USAGE, or denied
                continue
            stats = per_type.setdefault(kind, {"keys": 0, "bytes": 0})
            stats["keys"] += 1
            stats["bytes"] += size
            _keep(largest.setdefault(kind, []), (size, _text(key, _KEY_CHARS)))
        scanned += len(keys)
        if cursor == 0:
            complete = True
            break
    top = sorted(((size, key, kind) for kind, heap in largest.items() for size, key in heap),
                 reverse=True)
    # The overall top 10 can be all one type; like `--bigkeys`, name each type's largest.
    for kind, heap in largest.items():
        size, key = max(heap)
        per_type[kind] |= {"largest_key": key, "largest_bytes": size}
    return {
        "scanned": scanned, "complete": complete, "max_keys": component.max_keys,
        "budget_s": round(budget, 3), "elapsed_s": round(time.monotonic() - started, 4),
        "per_type": per_type,
        "largest": [{"key": key, "type": kind, "bytes": size} for size, key, kind in top]
        [:_MAX_ITEMS],
    }


def _keep(heap: list[tuple[int, str]], item: tuple[int, str]) -> None:
    """Keep the `_KEEP_PER_TYPE` largest (size, key) pairs in a min-heap."""
    if len(heap) < _KEEP_PER_TYPE:
        heapq.heappush(heap, item)
    else:
        heapq.heappushpop(heap, item)
