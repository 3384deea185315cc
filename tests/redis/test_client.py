"""The allowlist wrapper: read-only commands pass, anything else never reaches Redis."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import redis
from stackmedic.probes.redis import RedisComponent
from stackmedic.probes.redis._client import ForbiddenCommandError, connect, describe_error
from tests.fixtures.redis import RedisServer
from tests.redis.conftest import admin

REFUSED = [
    ("SET", "k", "v"), ("DEL", "k"), ("FLUSHALL",), ("CONFIG", "SET", "maxmemory", "1"),
    ("KEYS", "*"), ("SCAN", 0), ("DEBUG", "SLEEP", "0"), ("CLIENT", "KILL", "ID", "1"),
    ("SHUTDOWN",), ("EVAL", "return 1", 0), ("MEMORY", "PURGE"), ("SLOWLOG", "RESET"),
    ("LATENCY", "RESET"), ("CONFIG", "REWRITE"), ("BGSAVE",), ("ACL", "SETUSER", "x"),
    ("SCAN", 0, "COUNT", 10_000_000), ("SCAN", 0, "COUNT", "many"),
    ("MEMORY", "USAGE", "k", "SAMPLES", 0), ("CONFIG", "GET", "*"),
    ("CONFIG", "GET", "maxmemory", "*pass*"),
]


def _commands_processed(watcher: redis.Redis) -> dict[str, int]:
    stats = watcher.info("commandstats")
    return {name: value["calls"] for name, value in stats.items()}


@pytest.mark.parametrize("command", REFUSED, ids=lambda c: " ".join(map(str, c)))
def test_forbidden_commands_are_refused_before_reaching_the_server(
        redis_factory: Callable[..., RedisServer], command: tuple[object, ...]) -> None:
    """A write or unbounded command raises ForbiddenCommandError and the server never sees it."""
    server = redis_factory()
    client = connect(RedisComponent(kind="redis", url=server.url), timeout=2.0)
    watcher = admin(server)
    before = _commands_processed(watcher)
    with pytest.raises(ForbiddenCommandError):
        client.call(*command)
    with pytest.raises(ForbiddenCommandError):
        client.batch([("PING",), command])
    after = _commands_processed(watcher)
    client.close()
    # Only our own INFO commandstats calls and no PING: the batch was refused whole.
    assert {k: v for k, v in after.items() if k != "cmdstat_info"} == \
        {k: v for k, v in before.items() if k != "cmdstat_info"}


def test_allowlisted_commands_reach_the_server(
        redis_factory: Callable[..., RedisServer]) -> None:
    """Every read-only command a diagnosis uses is sent and answered."""
    server = redis_factory()
    admin(server).set("k", "v")
    client = connect(RedisComponent(kind="redis", url=server.url), timeout=2.0)
    assert client.call("PING") is True
    assert client.call("CONFIG", "GET", "maxmemory") == [b"maxmemory", b"0"]
    assert client.call("SCAN", 0, "COUNT", 10)[1] == [b"k"]
    assert client.call("MEMORY", "USAGE", "k", "SAMPLES", 5) > 0
    replies = client.batch([("TYPE", "k"), ("MEMORY", "USAGE", "k"), ("DBSIZE",),
                            ("OBJECT", "ENCODING", "k"), ("SLOWLOG", "LEN")])
    assert replies[0] in (b"string", "string") and replies[2] == 1
    client.close()


def test_a_stopped_server_is_described_as_refused(
        redis_factory: Callable[..., RedisServer]) -> None:
    """Connection refused becomes the fact kind 'refused', not an exception."""
    server = redis_factory()
    server.stop()
    client = connect(RedisComponent(kind="redis", url=server.url), timeout=1.0)
    with pytest.raises(Exception) as caught:
        client.call("PING")
    assert describe_error(caught.value)["kind"] == "refused"


def test_the_fallback_encoder_writes_resp() -> None:
    """Without hiredis, commands are encoded as RESP arrays of bulk strings."""
    from stackmedic.probes.redis._client import _pack

    assert _pack(("MEMORY", "USAGE", b"k\xff", 5)) == (
        b"*4\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n$2\r\nk\xff\r\n$1\r\n5\r\n")


def test_a_refusal_names_the_command_never_its_arguments() -> None:
    """The error says which command was refused without echoing keys or values."""
    from stackmedic.probes.redis._client import check_allowed

    with pytest.raises(ForbiddenCommandError) as refused:
        check_allowed(("SET", "session:secret-key", "secret-value"))
    assert refused.value.command == "SET"
    assert "secret" not in str(refused.value)
