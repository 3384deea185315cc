"""Memory faults induced for real: evictions, noeviction at the limit, misses,
fragmentation and big keys."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

import redis
from stackmedic.findings import Severity
from stackmedic.history import History
from tests.fixtures.redis import RedisServer
from tests.redis.conftest import Workload, admin, diagnose, only, wait_for

SMALL_LRU = ("--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru")


def test_writes_past_maxmemory_with_lru_are_evictions(
        redis_factory: Callable[..., RedisServer]) -> None:
    """Writing into a full allkeys-lru server during the run shows evictions; being at
    maxmemory is no problem by itself there (eviction is doing its job), so near_limit
    is ok and points at cache.evictions instead of outranking it."""
    server = redis_factory(*SMALL_LRU)
    client = admin(server)
    counter = itertools.count()
    with Workload(lambda: client.set(f"k{next(counter)}", "x" * 1024)):
        wait_for(lambda: client.info("stats")["evicted_keys"] > 0, "the first eviction")
        findings = diagnose(server.url)
    evictions = only(findings, "cache.evictions")
    assert evictions.severity in (Severity.WARNING, Severity.CRITICAL)
    assert evictions.evidence["evicted_during_interval"] > 0
    assert evictions.remedy is not None and "CONFIG SET maxmemory" in evictions.remedy.steps[0]
    near = only(findings, "cache.memory.near_limit")
    assert near.severity is Severity.OK and near.evidence["basis"] == "maxmemory"
    assert near.observed is not None and near.observed >= 0.95
    assert "cache.evictions" in near.summary
    assert only(findings, "cache.policy.noeviction_full").severity is Severity.OK


def test_noeviction_at_the_limit_says_writes_fail(
        redis_factory: Callable[..., RedisServer]) -> None:
    """A noeviction server filled until it answers OOM is critical noeviction_full."""
    server = redis_factory("--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
    client = admin(server)
    with pytest.raises(redis.ResponseError, match="maxmemory"):
        for i in range(100_000):
            client.set(f"k{i}", "x" * 1024)
    findings = diagnose(server.url)
    full = only(findings, "cache.policy.noeviction_full")
    assert full.severity is Severity.CRITICAL
    assert full.evidence["oom_errors"] >= 1
    assert full.remedy is not None
    assert any("maxmemory-policy allkeys-lru" in step for step in full.remedy.steps)
    assert only(findings, "cache.evictions").severity is Severity.OK
    near = only(findings, "cache.memory.near_limit")
    assert near.severity is Severity.CRITICAL and near.remedy is not None
    assert any("maxmemory-policy allkeys-lru" in step for step in near.remedy.steps)


def test_volatile_lru_without_ttls_at_the_limit_says_writes_fail(
        redis_factory: Callable[..., RedisServer]) -> None:
    """volatile-lru with no key carrying a TTL refuses writes at the limit like noeviction."""
    server = redis_factory("--maxmemory", "2mb", "--maxmemory-policy", "volatile-lru")
    client = admin(server)
    with pytest.raises(redis.ResponseError, match="maxmemory"):
        for i in range(100_000):
            client.set(f"k{i}", "x" * 1024)
    full = only(diagnose(server.url), "cache.policy.noeviction_full")
    assert full.severity is Severity.CRITICAL, full.summary
    assert full.evidence["keys_with_ttl"] == 0 and "no key has a TTL" in full.summary
    assert full.remedy is not None
    assert any("maxmemory-policy allkeys-lru" in step for step in full.remedy.steps)


def test_a_subscriber_that_never_reads_is_blamed_not_the_data(
        redis_factory: Callable[..., RedisServer]) -> None:
    """Output buffers of a stalled subscriber fill maxmemory: the cause names the client
    buffers (MEMORY DOCTOR's "big client buffers"), not the data set."""
    server = redis_factory("--maxmemory", "40mb", "--maxmemory-policy", "allkeys-lru",
                           "--client-output-buffer-limit", "pubsub 0 0 0")
    client = admin(server)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", server.port))
    try:
        stalled.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n")
        wait_for(lambda: client.pubsub_numsub("news")[0][1] == 1, "the subscription")
        message = "m" * 1_000_000
        for _ in range(200):  # until its buffer holds ~36 MB, whatever the kernel takes
            if client.info("memory")["mem_clients_normal"] > 36_000_000:
                break
            client.publish("news", message)
        finding = only(diagnose(server.url, max_keys=0), "cache.memory.near_limit")
    finally:
        stalled.close()
    assert finding.severity in (Severity.WARNING, Severity.CRITICAL), finding.summary
    assert finding.cause is not None and "client buffers" in finding.cause
    assert finding.evidence["clients_memory"] > 30_000_000
    assert finding.remedy is not None
    assert finding.remedy.steps[0].startswith("Client buffers:")
    assert any("client-output-buffer-limit" in step for step in finding.remedy.steps)
    assert not any("maxmemory-policy" in step for step in finding.remedy.steps)  # it has one


def test_a_miss_heavy_workload_is_a_low_hit_rate(
        redis_factory: Callable[..., RedisServer]) -> None:
    """Nine misses per hit during the sampling interval give a critical cache.hit_rate.low."""
    server = redis_factory()
    client = admin(server)
    client.set("present", "1")
    names = itertools.cycle(["present"] + [f"absent{i}" for i in range(9)])
    with Workload(lambda: client.get(next(names))):
        finding = only(diagnose(server.url), "cache.hit_rate.low")
    assert finding.severity is Severity.CRITICAL
    assert finding.observed is not None and finding.observed < 0.3
    assert finding.evidence["misses"] > finding.evidence["hits"] > 0
    assert finding.evidence["lifetime_hit_rate"] is not None


def test_a_busy_cache_with_hits_is_not_a_low_hit_rate(
        redis_factory: Callable[..., RedisServer]) -> None:
    """Only hits during the interval give an ok hit rate with the measured figure."""
    server = redis_factory()
    client = admin(server)
    client.set("present", "1")
    with Workload(lambda: client.get("present")):
        finding = only(diagnose(server.url), "cache.hit_rate.low")
    assert finding.severity is Severity.OK and finding.observed == 1.0


def test_deleting_most_keys_leaves_fragmentation(
        redis_factory: Callable[..., RedisServer]) -> None:
    """Filling 100k values and deleting nine in ten leaves RSS far above the data."""
    server = redis_factory("--enable-debug-command", "yes")
    client = admin(server)
    client.execute_command("DEBUG", "POPULATE", 100_000, "frag", 500)
    pipe = client.pipeline(transaction=False)
    for i in range(100_000):
        if i % 10:
            pipe.delete(f"frag:{i}")
    pipe.execute()
    finding = only(diagnose(server.url, max_keys=0), "cache.fragmentation")
    assert finding.severity in (Severity.WARNING, Severity.CRITICAL), finding.summary
    assert finding.evidence["excess"] > 10 * 1024 * 1024
    assert finding.remedy is not None and "activedefrag" in finding.remedy.steps[0]
    assert not [step for step in finding.remedy.steps if step.startswith("Swap:")]


@pytest.fixture
def bigkey_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """100k small keys and one 50 MB list."""
    server = redis_factory("--enable-debug-command", "yes")
    client = admin(server)
    client.execute_command("DEBUG", "POPULATE", 100_000, "small", 20)
    element = "e" * 500
    pipe = client.pipeline(transaction=False)
    for _ in range(100):
        pipe.rpush("biglist", *([element] * 1000))
    pipe.execute()
    return server


def test_a_50mb_list_among_100k_keys_is_a_big_key(bigkey_server: RedisServer) -> None:
    """A full scan finds the 50 MB list and reports its name, type and size."""
    findings = diagnose(bigkey_server.url, deadline=60, max_keys=200_000,
                        bigkey_budget_s=50, timeout=55)
    finding = only(findings, "cache.bigkeys")
    assert finding.severity is Severity.WARNING
    assert (finding.evidence["key"], finding.evidence["type"]) == ("biglist", "list")
    assert finding.evidence["bytes"] >= 50_000_000
    assert finding.evidence["scanned"] == 100_001 and finding.evidence["complete"]
    assert finding.remedy is not None and "biglist" in finding.remedy.steps[0]
    per_type = finding.evidence["per_type"]
    assert per_type["list"]["largest_key"] == "biglist"
    assert per_type["string"]["keys"] == 100_000
    assert per_type["string"]["largest_key"].startswith("small:")


def test_big_key_sampling_stops_at_max_keys(bigkey_server: RedisServer) -> None:
    """With max_keys=1000 the sample stops there and says it is partial."""
    finding = only(diagnose(bigkey_server.url, deadline=60, max_keys=1000,
                            bigkey_budget_s=50, timeout=55),
                   "cache.bigkeys")
    assert finding.evidence["scanned"] == 1000
    assert finding.evidence["complete"] is False
    assert "partial" in finding.summary


def test_big_key_sampling_stops_at_its_time_budget(bigkey_server: RedisServer) -> None:
    """A tiny time budget ends the scan early even though max_keys would allow more."""
    finding = only(diagnose(bigkey_server.url, max_keys=1_000_000, bigkey_budget_s=0.01),
                   "cache.bigkeys")
    assert finding.evidence["complete"] is False
    assert 0 < finding.evidence["scanned"] < 100_001


def test_evictions_and_rejections_between_runs_are_counted_with_history(
        redis_factory: Callable[..., RedisServer], tmp_path: Path) -> None:
    """Evictions and refused connections that happened between two runs are invisible to
    a run alone, and reported with the previous run's counters."""
    server = redis_factory(*SMALL_LRU, "--maxclients", "10")
    history = tmp_path / "history.json"
    first = diagnose(server.url, history=History(history))
    assert only(first, "cache.evictions").severity is Severity.OK
    client = admin(server)
    for i in range(4000):  # 4 MB into a 2 MB allkeys-lru cache
        client.set(f"k{i}", "x" * 1024)
    held = [admin(server) for _ in range(12)]
    refused = 0
    for extra in held:
        try:
            extra.ping()
        except redis.ConnectionError:
            refused += 1
    for extra in held:
        extra.close()
    assert refused >= 3 and client.info("stats")["evicted_keys"] > 0
    client.close()
    alone = diagnose(server.url)
    assert only(alone, "cache.evictions").severity is Severity.OK
    assert only(alone, "cache.clients.rejected", "redis.clients").severity is Severity.OK
    second = diagnose(server.url, history=History(history))
    evictions = only(second, "cache.evictions")
    assert evictions.severity in (Severity.WARNING, Severity.CRITICAL)
    assert evictions.evidence["evicted_since_last_run"] > 0
    assert "since the last run" in evictions.summary
    rejected = only(second, "cache.clients.rejected", "redis.clients")
    assert rejected.severity is Severity.WARNING
    assert rejected.evidence["rejected_since_last_run"] == refused
