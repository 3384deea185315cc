"""Memory past maxmemory, and remedies that persist settings on a server with no config
file (CONFIG REWRITE fails there)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import redis
from tests.fixtures.redis import RedisServer
from tests.redis.conftest import admin, diagnose, only


def test_memory_over_maxmemory_is_over_not_near_and_persisted_without_rewrite(
        redis_factory: Callable[..., RedisServer]) -> None:
    """maxmemory lowered below the data of a noeviction server: near_limit says the
    memory is over the limit, and the remedies of a server started without a config
    file (where CONFIG REWRITE fails) put the settings on its command line instead."""
    server = redis_factory("--maxmemory-policy", "noeviction")
    client = admin(server)
    client.mset({f"k{i}": "x" * 1024 for i in range(3000)})
    client.config_set("maxmemory", "2mb")
    with pytest.raises(redis.ResponseError, match="without a config file"):
        client.config_rewrite()
    findings = diagnose(server.url)
    near = only(findings, "cache.memory.near_limit")
    assert near.observed is not None and near.observed > 1
    assert ": over the 2.0 MiB maxmemory limit (" in near.summary
    assert near.remedy is not None
    steps = "\n".join(near.remedy.steps)
    assert "CONFIG REWRITE would fail" in steps and "CONFIG REWRITE\n" not in steps
    assert f"add `--maxmemory {near.evidence['suggested_maxmemory']}`" in steps
    full = only(findings, "cache.policy.noeviction_full")
    assert full.remedy is not None
    assert "add `--maxmemory-policy allkeys-lru`" in full.remedy.steps[0]
