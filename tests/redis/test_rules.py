"""The Redis rules on recorded facts: verdicts that are hard to induce, and hostile input.

`recorded/master.json` is the real facts of a master with one replica, a slow-log
entry, a latency spike and a blocked client (recorded by this probe's collector).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stackmedic.checks import default_thresholds
from stackmedic.doctor import evaluate
from stackmedic.findings import Finding, Severity
from stackmedic.probes.redis import RedisComponent
from stackmedic.probes.redis._rules_health import LINK_DOWN
from stackmedic.thresholds import Thresholds
from tests.redis.conftest import only

RECORDED = json.loads((Path(__file__).parent / "recorded" / "master.json").read_text())
COMPONENT = RedisComponent(kind="redis")


def run_rules(facts: dict[str, Any]) -> list[Finding]:
    """Every redis rule over `facts`, as the doctor applies them."""
    return evaluate("cache", COMPONENT, "server", facts, Thresholds(default_thresholds(), {}))


def with_info(**changes: Any) -> dict[str, Any]:
    facts = copy.deepcopy(RECORDED)
    facts["info"].update(changes)
    facts["info_after"].update(changes)
    return facts


def test_recorded_master_has_only_its_latency_spike_as_a_problem() -> None:
    """The recorded master's 20 ms spike is its one problem; every check has a finding."""
    findings = run_rules(RECORDED)
    assert [f.symptom for f in findings if f.is_problem] == ["cache.latency.high"]
    assert {f.check for f in findings} >= {"redis.availability", "redis.memory",
                                           "redis.replication", "redis.bigkeys"}


def test_rss_below_used_memory_is_swap() -> None:
    """A fragmentation ratio below 1 on a sizeable instance warns of swapping."""
    finding = only(run_rules(with_info(used_memory=200_000_000, used_memory_rss=150_000_000,
                                       mem_fragmentation_ratio=0.75)), "cache.fragmentation")
    assert finding.severity is Severity.WARNING and "swapped" in finding.summary
    assert finding.remedy is not None and finding.remedy.steps
    assert all(step.startswith("Swap:") for step in finding.remedy.steps)
    assert "activedefrag" not in " ".join(finding.remedy.steps)


def test_an_empty_instance_is_never_called_fragmented() -> None:
    """A high ratio on a few MB of data is ok, as MEMORY DOCTOR says."""
    finding = only(run_rules(with_info(mem_fragmentation_ratio=9.5)), "cache.fragmentation")
    assert finding.severity is Severity.OK


def test_a_loading_server_is_down() -> None:
    """INFO loading:1 means the server refuses commands: critical cache.down."""
    finding = only(run_rules(with_info(loading=1)), "cache.down", "redis.availability")
    assert finding.severity is Severity.CRITICAL and "loading" in finding.summary


def test_a_replica_with_its_link_up_is_not_reported() -> None:
    """A replica whose link is up yields no replication problem."""
    facts = with_info(role="slave", master_host="10.0.0.1", master_port=6379,
                      master_link_status="up")
    assert not [f for f in run_rules(facts) if f.check == "redis.replication"]
    facts = with_info(role="slave", master_host="10.0.0.1", master_port=6379,
                      master_link_status="down", master_link_down_since_seconds=42)
    assert only(run_rules(facts), LINK_DOWN, "redis.replication").severity is Severity.CRITICAL


def test_info_denied_by_acl_is_unknown_not_ok() -> None:
    """Without INFO the memory checks say unknown and name the user."""
    facts = copy.deepcopy(RECORDED) | {"info": None, "info_after": None, "user": "probe",
                                        "denied": ["INFO"]}
    finding = only(run_rules(facts), "cache.memory.near_limit")
    assert finding.severity is Severity.UNKNOWN and "'probe'" in finding.summary


def test_a_collector_error_yields_only_the_availability_verdict() -> None:
    """Facts with a timeout error give one critical cache.down and nothing else."""
    facts = {"target": "redis://10.0.0.9:6379/0", "user": "default", "denied": [],
             "errors": [], "error": {"kind": "timeout", "message": "Timeout connecting"}}
    findings = run_rules(facts)
    assert [(f.symptom, f.severity) for f in findings] == [("cache.down", Severity.CRITICAL)]


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    elif isinstance(value, list) and value:
        yield from _leaves(value[0], (*path, 0))
    if path:
        yield path


def _set(facts: dict[str, Any], path: tuple[Any, ...], new: Any) -> dict[str, Any]:
    copied = copy.deepcopy(facts)
    node: Any = copied
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new
    return copied


@pytest.mark.parametrize("junk", ["garbage", None, -1, [], {}, 1e308, float("nan")],
                         ids=repr)
def test_malformed_facts_never_crash_a_rule(junk: Any) -> None:
    """Any single fact replaced by junk gives findings, never a failed rule."""
    for path in _leaves(RECORDED):
        findings = run_rules(_set(RECORDED, path, junk))
        failed = [f.summary for f in findings if f.symptom == "stackmedic.check.failed"]
        assert failed == [], f"{path}: {failed}"


def _variants() -> Iterator[dict[str, Any]]:
    """Recorded facts plus variants that drive every rule into its problem branch."""
    yield RECORDED
    for kind in ("refused", "auth", "maxclients"):
        yield {"target": "redis://127.0.0.1:6379/0", "user": "app", "denied": [], "errors": [],
               "error": {"kind": kind, "message": kind}}
    big = copy.deepcopy(RECORDED)
    big["bigkeys"]["largest"] = [{"key": "huge", "type": "hash", "bytes": 500_000_000}]
    yield big
    yield with_info(role="slave", master_host="10.0.0.1", master_port=6379,
                    master_link_status="down")


def test_every_remedy_step_is_filled_from_its_own_finding() -> None:
    """Each problem's Fix steps get every {evidence.key} from that finding's own evidence
    (not from another check's finding of the same symptom)."""
    from stackmedic.runbooks import attach_remedy, load_runbook, sections

    seen = set()
    for facts in [*_variants(), *_problem_variants()]:
        # A password in the URL is masked in `target`: no command may carry the mask.
        facts = facts | {"target": "redis://app:***@10.0.0.1:6379/0"}
        for finding in run_rules(facts):
            if not finding.is_problem or finding.symptom == "stackmedic.check.failed":
                continue
            seen.add(finding.symptom)
            fix = sections(load_runbook(finding.symptom))["Fix"]
            wanted = set(re.findall(r"\{evidence\.([A-Za-z0-9_]+)\}", fix))
            unfilled = {k for k in wanted
                        if not isinstance(finding.evidence.get(k), str | int | float)}
            assert not unfilled, f"{finding.check} {finding.symptom}: {sorted(unfilled)}"
            remedy = attach_remedy(finding).remedy
            assert remedy is not None
            masked = [line for step in remedy.steps for line in step.splitlines()
                      if "redis-cli" in line and "***" in line]
            assert not masked, f"{finding.symptom}: {masked}"
    assert {s for s in seen if s.startswith("cache.")} >= {
        "cache.down", "cache.auth.failed", "cache.clients.rejected", "cache.bigkeys",
        "cache.replication.link_down", "cache.memory.near_limit",
        "cache.policy.noeviction_full", "cache.evictions", "cache.fragmentation",
        "cache.persistence.failing", "cache.slowlog", "cache.clients.blocked",
        "cache.replication.lag", "cache.hit_rate.low"}


def _problem_variants() -> Iterator[dict[str, Any]]:
    """Recorded facts pushed into each remaining problem branch."""
    noevict = with_info(maxmemory=100_000_000, used_memory=99_000_000,
                        maxmemory_policy="noeviction")
    noevict["info"]["errorstats"] = noevict["info_after"]["errorstats"] = {"OOM": 3}
    yield noevict
    evicting = with_info(maxmemory=100_000_000, used_memory=99_000_000)
    evicting["info"]["evicted_keys"] = 0
    evicting["info_after"]["evicted_keys"] = 500
    yield evicting
    yield with_info(used_memory=200_000_000, used_memory_rss=600_000_000,
                    mem_fragmentation_ratio=3.0)
    yield with_info(rdb_last_bgsave_status="err")
    slow = copy.deepcopy(RECORDED)
    slow["slowlog"] = [{**slow["slowlog"][0], "id": i} for i in range(40)]
    yield slow
    yield with_info(blocked_clients=80)
    lagging = copy.deepcopy(RECORDED)
    for info in (lagging["info"], lagging["info_after"]):
        info["replicas"][0]["lag"] = 90
    yield lagging
    misses = copy.deepcopy(RECORDED)
    misses["info_after"]["keyspace_misses"] = misses["info"]["keyspace_misses"] + 1000
    yield misses


def test_runbook_placeholders_are_evidence_the_rules_set() -> None:
    """Every {evidence.key} in a cache.* runbook is a key its symptom's findings carry."""
    from stackmedic.runbooks import SECTIONS, fix_steps, load_runbook, sections
    from stackmedic.symptoms import catalogue

    keys: dict[str, set[str]] = {}
    for facts in _variants():
        for finding in run_rules(facts):
            keys.setdefault(finding.symptom, set()).update(finding.evidence)
    cache_ids = sorted(s for s in catalogue() if s.startswith("cache."))
    assert set(cache_ids) <= set(keys), "a variant is missing for some symptom"
    for symptom in cache_ids:
        text = load_runbook(symptom)
        assert tuple(sections(text)) == SECTIONS and text.startswith("# ")
        assert fix_steps(text)
        used = set(re.findall(r"\{evidence\.([A-Za-z0-9_]+)\}", text))
        assert used <= keys[symptom], f"{symptom}: {sorted(used - keys[symptom])}"


@pytest.mark.parametrize(("url", "user", "password", "expected"), [
    ("unix:///run/redis/redis.sock?db=2", "default", False,
     "redis-cli -s /run/redis/redis.sock -n 2"),
    ("redis://:***@10.0.0.5:6380/3", "default", False,
     "redis-cli -h 10.0.0.5 -p 6380 -n 3 --askpass"),
    ("redis://127.0.0.1:6379/0", "app", True,
     "redis-cli -h 127.0.0.1 -p 6379 --user app --askpass"),
    ("rediss://cache.internal/0", "default", False, "redis-cli -h cache.internal -p 6379 --tls"),
], ids=["unix", "url-password", "acl-user", "tls"])
def test_runbook_commands_use_a_redis_cli_that_reaches_the_server(
        url: str, user: str, password: bool, expected: str) -> None:
    """Remedies start with the redis-cli flags for this server: a socket path for unix
    URLs (which `redis-cli -u` refuses), `--askpass` instead of a masked password."""
    from stackmedic.probes.redis._derive import cli_command

    assert cli_command(url, user, password=password) == expected


def test_a_unix_socket_remedy_never_uses_redis_cli_u() -> None:
    """A finding about a unix-socket server gives steps that use `redis-cli -s`."""
    from stackmedic.runbooks import attach_remedy

    facts = with_info(maxmemory=100_000_000, used_memory=99_000_000)
    facts["target"] = "unix:///run/redis/redis.sock"
    facts["cli"] = "redis-cli -s /run/redis/redis.sock"
    finding = attach_remedy(only(run_rules(facts), "cache.memory.near_limit"))
    assert finding.remedy is not None
    text = "\n".join(finding.remedy.steps)
    assert "redis-cli -s /run/redis/redis.sock CONFIG SET maxmemory" in text
    assert "-u " not in text


def test_a_big_key_name_is_shell_quoted_in_its_remedy() -> None:
    """A key name with quotes and `$(…)` becomes one safe argument of UNLINK, never code."""
    import shlex

    from stackmedic.runbooks import attach_remedy

    name = "user:it's $(touch /tmp/pwned)"
    facts = copy.deepcopy(RECORDED)
    facts["bigkeys"]["largest"] = [{"key": name, "type": "hash", "bytes": 500_000_000}]
    finding = attach_remedy(only(run_rules(facts), "cache.bigkeys"))
    assert finding.remedy is not None
    unlink = next(line for step in finding.remedy.steps for line in step.splitlines()
                  if "UNLINK" in line)
    words = shlex.split(unlink)
    assert words[-2:] == ["UNLINK", name]


def test_maxmemory_above_system_memory_is_judged_against_the_machine() -> None:
    """maxmemory larger than the host's memory never protects it: 95% of RAM is critical."""
    facts = with_info(maxmemory=64 * 2**30, total_system_memory=8 * 2**30,
                      used_memory=int(7.8 * 2**30), mem_not_counted_for_evict=0)
    finding = only(run_rules(facts), "cache.memory.near_limit")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["basis"] == "system memory"
    assert finding.evidence["suggested_maxmemory"] == "6144mb"
    assert finding.cause is not None and "above the machine" in finding.cause


@pytest.mark.parametrize(("expires", "severity"), [(0, Severity.CRITICAL), (50, Severity.OK)])
def test_a_volatile_policy_without_ttls_is_noeviction(expires: int, severity: Severity) -> None:
    """volatile-lru with no key carrying a TTL cannot evict: at the limit writes fail."""
    facts = with_info(maxmemory=100_000_000, used_memory=99_500_000,
                      mem_not_counted_for_evict=0, maxmemory_policy="volatile-lru")
    for info in (facts["info"], facts["info_after"]):
        info["keyspace"] = {"db0": {"keys": 1000, "expires": expires, "avg_ttl": 0}}
    finding = only(run_rules(facts), "cache.policy.noeviction_full")
    assert finding.severity is severity
    assert finding.evidence["keys_with_ttl"] == expires


def test_the_docs_table_lists_every_check_and_symptom() -> None:
    """docs/redis.md has one row per (check, symptom) the probe registers, and no others."""
    from stackmedic.checks import get_probe

    doc = (Path(__file__).resolve().parents[2] / "docs" / "redis.md").read_text()
    table = doc.split("## Checks and default thresholds", 1)[1].split("\n## ", 1)[0]
    rows: set[tuple[str, str]] = set()
    check = ""
    for line in table.splitlines():
        cells = [cell.strip().strip("`*") for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2 or not cells[1].startswith("cache."):
            continue
        check = cells[0] or check
        rows.add((check, cells[1]))
    registered = {(rule.id, symptom) for rule in get_probe("redis").rules
                  for symptom in rule.symptoms}
    assert rows == registered
