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
