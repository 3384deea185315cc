"""Health faults induced for real: blocked clients, slow commands, latency spikes,
a failing BGSAVE, a broken replication link, and a healthy server under load."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from stackmedic.findings import Severity
from stackmedic.probes.redis._rules_health import LAG, LINK_DOWN
from stackmedic.testing import problems
from tests.fixtures.redis import RedisServer
from tests.redis.conftest import admin, diagnose, only, wait_for

DEBUG = ("--enable-debug-command", "yes")
# Replicas sync at once instead of after the default 5 s diskless-sync delay.
MASTER = ("--repl-diskless-sync-delay", "0")


def test_clients_waiting_in_blpop_are_blocked_clients(
        redis_factory: Callable[..., RedisServer]) -> None:
    """Six clients parked in BLPOP are a cache.clients.blocked warning naming the command."""
    server = redis_factory()
    client = admin(server)
    waiters = [threading.Thread(target=admin(server).blpop, args=(["jobs"], 30), daemon=True)
               for _ in range(6)]
    for waiter in waiters:
        waiter.start()
    wait_for(lambda: client.info("clients")["blocked_clients"] == 6, "six blocked clients")
    finding = only(diagnose(server.url), "cache.clients.blocked")
    client.lpush("jobs", *range(6))  # release the waiters
    for waiter in waiters:
        waiter.join(10)
    assert finding.severity is Severity.WARNING and finding.observed == 6
    assert finding.evidence["commands"] == "blpop"
    assert len(finding.evidence["clients"]) == 6
    assert all(str(c["id"]).isdigit() for c in finding.evidence["clients"])  # for UNBLOCK


def test_slow_commands_are_reported_without_their_arguments(
        redis_factory: Callable[..., RedisServer]) -> None:
    """Four DEBUG SLEEPs over slowlog-log-slower-than are a cache.slowlog warning."""
    server = redis_factory(*DEBUG, "--slowlog-log-slower-than", "10000")
    client = admin(server)
    for _ in range(4):
        client.execute_command("DEBUG", "SLEEP", "0.02")
    client.set("secret-key-name", "secret-value-xyz")
    finding = only(diagnose(server.url), "cache.slowlog")
    assert finding.severity is Severity.WARNING and finding.observed is not None
    assert finding.observed >= 4
    assert finding.evidence["slowest_command"] == "DEBUG SLEEP"
    assert finding.evidence["entries"][0]["args"] == 1
    assert "0.02" not in json.dumps(finding.to_dict())


def test_a_low_slowlog_threshold_logs_everything(
        redis_factory: Callable[..., RedisServer]) -> None:
    """With slowlog-log-slower-than 0 every command is logged, and the check says so."""
    server = redis_factory("--slowlog-log-slower-than", "0")
    client = admin(server)
    for i in range(40):
        client.set(f"k{i}", i)
    finding = only(diagnose(server.url), "cache.slowlog")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["slower_than_us"] == "0"


def test_the_doctors_own_commands_are_not_slow_log_entries(
        redis_factory: Callable[..., RedisServer]) -> None:
    """With everything logged, a second run does not count the first run's INFO, SCAN and
    MEMORY USAGE as the application's slow commands."""
    server = redis_factory("--slowlog-log-slower-than", "0")
    client = admin(server)
    client.mset({f"k{i}": i for i in range(200)})
    client.slowlog_reset()  # leaves at most this RESET itself from the application side
    diagnose(server.url)  # fills the slow log with its own ~400 commands
    finding = only(diagnose(server.url), "cache.slowlog")
    assert finding.severity is Severity.OK, finding.summary
    assert finding.evidence["own_entries"] > 30


def test_a_latency_monitor_spike_is_high_latency(
        redis_factory: Callable[..., RedisServer]) -> None:
    """A 60 ms command recorded by the latency monitor is a cache.latency.high warning."""
    server = redis_factory(*DEBUG, "--latency-monitor-threshold", "10")
    admin(server).execute_command("DEBUG", "SLEEP", "0.06")
    finding = only(diagnose(server.url), "cache.latency.high", "redis.latency")
    assert finding.severity is Severity.WARNING
    assert finding.observed is not None and finding.observed >= 60
    assert finding.evidence["worst_event"] == "command"
    assert finding.evidence["rtt_p50_ms"] is not None


def test_a_bgsave_into_an_unwritable_dir_is_persistence_failing(
        redis_factory: Callable[..., RedisServer], immutable_dir: Path) -> None:
    """BGSAVE with `dir` on an immutable directory fails and is critical, naming the dir."""
    server = redis_factory("--enable-protected-configs", "yes")
    client = admin(server)
    client.set("k", "v")
    client.config_set("dir", str(immutable_dir))
    client.bgsave()
    wait_for(lambda: client.info("persistence")["rdb_bgsave_in_progress"] == 0
             and client.info("persistence")["rdb_last_bgsave_status"] == "err",
             "the background save to fail")
    finding = only(diagnose(server.url), "cache.persistence.failing")
    client.config_set("dir", str(server.dir))  # let Redis leave the immutable directory
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["dir"] == str(immutable_dir)
    assert finding.remedy is not None
    assert any(f"chown redis:redis {immutable_dir}" in step for step in finding.remedy.steps)


def test_a_stopped_master_is_a_broken_replication_link(
        redis_factory: Callable[..., RedisServer]) -> None:
    """A replica whose master was stopped reports its link down; before, all is well."""
    master = redis_factory(*MASTER)
    replica = redis_factory("--replicaof", "127.0.0.1", str(master.port))
    wait_for(lambda: admin(replica).info("replication")["master_link_status"] == "up",
             "the replica to sync")
    lag = only(diagnose(master.url), LAG, "redis.replication")
    assert lag.severity is Severity.OK and lag.evidence["replicas"][0]["state"] == "online"
    master.stop()
    wait_for(lambda: admin(replica).info("replication")["master_link_status"] == "down",
             "the replica to notice")
    link = only(diagnose(replica.url), LINK_DOWN, "redis.replication")
    assert link.severity is Severity.CRITICAL
    assert link.evidence["master"] == f"127.0.0.1:{master.port}"


def test_a_paused_replica_lags(redis_factory: Callable[..., RedisServer]) -> None:
    """A replica stopped with SIGSTOP stops acknowledging; the master reports its lag."""
    master = redis_factory(*MASTER)
    replica = redis_factory("--replicaof", "127.0.0.1", str(master.port))
    watcher = admin(master)
    wait_for(lambda: watcher.info("replication").get("slave0", {}).get("state") == "online",
             "the replica to sync")
    os.kill(replica.proc.pid, signal.SIGSTOP)
    try:
        watcher.set("k", "v" * 1000)
        wait_for(lambda: watcher.info("replication")["slave0"]["lag"] >= 11,
                 "the replica lag to pass 10 s", timeout=30)
        finding = only(diagnose(master.url), LAG, "redis.replication")
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
    assert finding.severity is Severity.WARNING
    assert finding.evidence["replica"] == f"127.0.0.1:{replica.port}"
    assert finding.evidence["bytes_behind"] > 0


@pytest.mark.skipif(shutil.which("redis-benchmark") is None,
                    reason="redis-benchmark (apt: redis-tools) is not installed")
def test_a_healthy_server_under_benchmark_load_is_clean(
        redis_factory: Callable[..., RedisServer]) -> None:
    """redis-benchmark traffic during the run produces no warning or critical finding."""
    server = redis_factory()
    load = subprocess.Popen(
        ["redis-benchmark", "-p", str(server.port), "-c", "4", "-n", "100000000", "-r", "1000",
         "-t", "set,get,incr,lpush,lpop,hset", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: admin(server).info("stats")["total_commands_processed"] > 10_000,
                 "the benchmark to run")
        findings = diagnose(server.url, max_keys=10_000)
    finally:
        load.terminate()
        load.wait(10)
    assert [f.summary for f in problems(findings)] == []
    assert only(findings, "cache.latency.high").evidence["samples"] == 5
