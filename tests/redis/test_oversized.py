"""A real Redis whose reply to one command outgrows the cap: still Redis, says which."""

from __future__ import annotations

from collections.abc import Callable

from stackmedic.findings import Severity
from tests.fixtures.redis import RedisServer
from tests.redis.conftest import admin, diagnose, only


def test_a_huge_key_name_is_a_reply_too_large_not_a_foreign_server(
        redis_factory: Callable[..., RedisServer]) -> None:
    """A key whose name is over 64 MiB makes the key sample's SCAN reply too large: the
    server answered PING and INFO, so cache.down (unknown) names SCAN and never doubts
    that this is Redis."""
    server = redis_factory()
    admin(server).set(b"k" * (65 << 20), b"v")
    down = only(diagnose(server.url), "cache.down")
    assert down.severity is Severity.UNKNOWN
    assert down.evidence["command"] == "SCAN"
    assert "reply to SCAN was too large to read" in down.summary
    assert "not a Redis server" not in (down.cause or "")
    assert down.remedy is not None and "max_keys: 0" in down.remedy.steps[1]
