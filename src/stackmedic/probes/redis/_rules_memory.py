"""Redis rules about memory and keys: limit, eviction policy, evictions, hit rate,
fragmentation and big keys. They read the `redis.server` facts only."""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from stackmedic.checks import Facts, RuleContext
from stackmedic.findings import Finding, Remedy, Severity
from stackmedic.history import since_last_run
from stackmedic.probes.redis import probe
from stackmedic.probes.redis._derive import (
    as_float,
    as_int,
    delta,
    human_bytes,
    latest_info,
    live,
    mapping,
    records,
    where,
)
from stackmedic.thresholds import Threshold

# MEMORY DOCTOR's own limits: fragmentation only matters past 10 MB of waste, and
# below 5 MB of data the ratios of an almost empty instance mean nothing.
FRAG_MIN_EXCESS = 10 * 1024 * 1024
# MEMORY DOCTOR's "big client buffers": when clients' buffers hold this share of the
# memory (and over 10 MB), evicting keys or raising maxmemory treats the wrong thing.
CLIENT_BUFFER_SHARE = 0.25
SMALL_INSTANCE = 5 * 1024 * 1024
MIN_LOOKUPS = 20  # fewer lookups than this in the interval say nothing about a hit rate


def suggested_maxmemory(maxmemory: int, system: int) -> str | None:
    """A `CONFIG SET maxmemory` value for the runbooks: half as much again, but at most
    75% of the machine (room for fork copy-on-write); 75% when unset or above it. None
    when that is no raise: the limit already takes 75% of the machine."""
    if not maxmemory or (system and maxmemory > system):
        target = 0.75 * system
    else:
        target = max(float(maxmemory), min(1.5 * maxmemory, 0.75 * system or 1.5 * maxmemory))
        if math.ceil(target / 2**20) <= math.ceil(maxmemory / 2**20):
            return None
    return f"{max(1, math.ceil(target / 2**20))}mb" if target else "<bytes>"


def _room(facts: Facts, maxmemory: int, system: int) -> dict[str, Any]:
    """The evidence of the runbooks' "More memory" step (the value and how to persist
    it; None when no higher value is safe) and of their "No room" step."""
    suggested = suggested_maxmemory(maxmemory, system)
    return {"suggested_maxmemory": suggested,
            "persist_maxmemory": persist(facts, "maxmemory", suggested) if suggested else None,
            "maxmemory_human": human_bytes(maxmemory), "system_human": human_bytes(system)}


def _more_memory(evidence: dict[str, Any]) -> str:
    """The runbook case for more memory: raise maxmemory, or, when the limit already
    takes 75% of the machine, say there is no room and what to do instead."""
    return "More memory" if evidence["suggested_maxmemory"] else "No room"


def persist(facts: Facts, setting: str, value: str) -> str:
    """The line of a remedy that keeps a `CONFIG SET setting value` across restarts.
    CONFIG REWRITE fails ("ERR The server is running without a config file") when
    redis-server was started without one: INFO server's `config_file` is then empty."""
    cli, config_file = where(facts)["cli"], (latest_info(facts) or {}).get("config_file")
    flag = f"--{setting} {shlex.quote(value)}"
    if config_file:
        return f"{cli} CONFIG REWRITE   # saves it in {config_file}"
    if config_file == "":
        return (f"# no config file (INFO server config_file is empty), so CONFIG REWRITE "
                f"would fail: add `{flag}` to redis-server's command line (service unit, "
                "container command) or start it with a config file that sets it")
    return (f"{cli} CONFIG REWRITE   # if it fails 'running without a config file', add "
            f"`{flag}` to redis-server's command line instead")


def _unknown(ctx: RuleContext, symptom: str, facts: Facts, what: str) -> Finding:
    evidence = {**where(facts), "user": facts.get("user"), "denied": facts.get("denied")}
    if "INFO" in (facts.get("denied") or []):
        return ctx.finding(symptom, Severity.UNKNOWN, f"cannot judge {what}: INFO was not "
                           f"readable as user {facts.get('user')!r}", evidence=evidence,
                           cause="the ACL user lacks +info (see docs/redis.md for the "
                                 "permissions)")
    return ctx.finding(symptom, Severity.UNKNOWN, f"cannot judge {what}: the server's INFO "
                       "lacks the counters it needs", evidence=evidence,
                       cause="a Redis-compatible server or proxy that reports INFO "
                             "differently, or a reply that could not be read")


@probe.rule("redis.memory", uses="server",
            symptoms=["cache.memory.near_limit", "cache.policy.noeviction_full"],
            thresholds={"cache.memory.near_limit": Threshold(0.85, 0.95, unit="ratio"),
                        "cache.policy.noeviction_full": Threshold(0.90, 0.98, unit="ratio")})
def memory(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Used memory against maxmemory (or system memory when unlimited); noeviction
    close to the limit means writes are about to fail with OOM."""
    if not live(facts):
        return
    info = latest_info(facts)
    if info is None:
        yield _unknown(ctx, "cache.memory.near_limit", facts, "memory use")
        return
    # Redis leaves replication and AOF buffers out of the eviction decision; so do we.
    used = (as_int(info.get("used_memory")) or 0) - (as_int(info.get("mem_not_counted_for_evict"))
                                                      or 0)
    maxmemory = as_int(info.get("maxmemory")) or 0
    system = as_int(info.get("total_system_memory")) or 0
    # A maxmemory above the machine's memory never protects it (awesome-prometheus-alerts
    # checks both ratios): judge against whichever limit is reached first.
    limit, basis = (maxmemory, "maxmemory") if maxmemory and not maxmemory > system > 0 \
        else (system, "system memory")
    policy = str(info.get("maxmemory_policy", "?"))
    oom = as_int(mapping(info.get("errorstats")).get("OOM")) or 0
    clients = max(0, as_int(info.get("mem_clients_normal")) or 0)
    keyspace = info.get("keyspace")
    with_ttl = sum(as_int(mapping(db).get("expires")) or 0 for db in keyspace.values()) \
        if isinstance(keyspace, dict) else None
    evidence = {**where(facts), "used_memory": used, "limit": limit,
                "basis": basis, "maxmemory": maxmemory, "total_system_memory": system,
                "policy": policy, "oom_errors": oom, "keys_with_ttl": with_ttl,
                "used_human": human_bytes(used), "limit_human": human_bytes(limit),
                "clients_memory": clients, "clients_human": human_bytes(clients),
                "dataset_human": human_bytes(as_int(info.get("used_memory_dataset")) or 0),
                **_room(facts, maxmemory, system)}
    evidence |= {"persist_policy": persist(facts, "maxmemory-policy", "allkeys-lru"),
                 "config_file": info.get("config_file")}
    if not limit:
        yield ctx.finding("cache.memory.near_limit", Severity.UNKNOWN,
                          "neither maxmemory nor total_system_memory is known",
                          evidence=evidence)
        return
    ratio = round(used / limit, 4)
    buffers = clients > FRAG_MIN_EXCESS and clients >= CLIENT_BUFFER_SHARE * used
    # volatile-* policies evict only keys with a TTL: with none, they refuse writes at
    # the limit exactly like noeviction ("OOM command not allowed").
    no_victims = policy.startswith("volatile-") and with_ttl == 0
    evicts = policy.startswith("allkeys-") or (policy.startswith("volatile-")
                                               and bool(with_ttl))
    if buffers:
        cause = (f"client buffers hold {human_bytes(clients)} of the {human_bytes(used)} used: "
                 "a pub/sub subscriber or MONITOR that does not read its replies, or "
                 "huge pipelined requests; evicting keys will not free this")
    elif basis == "maxmemory":
        cause = "the data set outgrew maxmemory: more keys, larger values or missing TTLs"
    elif maxmemory:
        cause = (f"maxmemory ({human_bytes(maxmemory)}) is above the machine's memory, so it "
                 "never takes effect: the kernel OOM killer, not Redis, will act first")
    else:
        cause = ("Redis has no maxmemory and is growing towards the machine's memory; the "
                 "kernel OOM killer, not Redis, will decide what happens")
    # Past the limit (noeviction, or maxmemory lowered below the data) "near" is wrong.
    reached = "over" if used > limit else "at" if used == limit else ""
    share = f": {reached} the {human_bytes(limit)} {basis} limit" if reached \
        else f" of {human_bytes(limit)} {basis}"
    summary = f"{human_bytes(used)} used{share} ({ratio:.0%}), policy {policy}"
    if basis == "maxmemory" and evicts and not buffers:
        # A full cache is what an evicting policy is for: whether it evicts too much
        # (keys the application still wants) is cache.evictions' verdict, not this one.
        yield ctx.finding("cache.memory.near_limit", Severity.OK,
                          f"{summary}: eviction makes room for new writes (see "
                          "cache.evictions for how many keys it drops)", observed=ratio,
                          unit="ratio", evidence=evidence)
    else:
        yield _for_case(ctx.judge("cache.memory.near_limit", ratio, summary,
                                  evidence=evidence, cause=cause),
                        *(("Client buffers",) if buffers else ()), _more_memory(evidence),
                        *(() if evicts else ("No eviction",)), "Growth")
    if not maxmemory or (policy != "noeviction" and not no_victims):
        why = "no maxmemory set" if not maxmemory else f"policy {policy} evicts keys when full"
        yield ctx.finding("cache.policy.noeviction_full", Severity.OK,
                          f"writes cannot fail with OOM here: {why}", observed=ratio,
                          unit="ratio", evidence=evidence)
        return
    full = round(used / maxmemory, 4)
    refused = f"; {oom} commands already refused with OOM" if oom else ""
    how = (f"maxmemory-policy {policy} but no key has a TTL, so nothing can be evicted"
           if no_victims else "maxmemory-policy noeviction")
    yield _for_case(ctx.judge(
        "cache.policy.noeviction_full", full,
        f"{how}; at {full:.0%} of maxmemory writes fail with OOM when it is full{refused}",
        evidence=evidence | {"ratio_of_maxmemory": full},
        cause="volatile-* policies only evict keys with a TTL, and none has one"
              if no_victims else
              "noeviction suits a primary data store, not a cache: when the limit is "
              "reached every write is refused instead of evicting keys"),
        "Cache", "TTLs", _more_memory(evidence), "Free space")


@probe.rule("redis.evictions", uses="server", symptoms=["cache.evictions"],
            thresholds={"cache.evictions": Threshold(1.0, 100.0, unit="keys/s")})
def evictions(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """evicted_keys rising, as keys/s: between the two INFO samples of this run or, with
    the doctor's history, since the previous run, whichever is higher (a burst between
    runs counts as much as one happening now)."""
    if not live(facts):
        return
    grew, interval = delta(facts, "evicted_keys"), as_float(facts.get("interval_s")) or 0.0
    if grew is None or interval <= 0:
        yield _unknown(ctx, "cache.evictions", facts, "evictions")
        return
    info = latest_info(facts) or {}
    rate = round(grew / interval, 2)
    evidence = {**where(facts), "evicted_during_interval": grew,
                "interval_s": interval,
                "evicted_total": as_int(info.get("evicted_keys")),
                "policy": info.get("maxmemory_policy"), "maxmemory": info.get("maxmemory"),
                "config_file": info.get("config_file"),
                **_room(facts, as_int(info.get("maxmemory")) or 0,
                       as_int(info.get("total_system_memory")) or 0)}
    summary = f"{grew} keys evicted in {interval:.1f}s ({rate:g}/s; " \
              f"{evidence['evicted_total']} since start)"
    change = since_last_run(facts, "evicted_keys")
    if change is not None and change.seconds > interval:
        since_rate = round(change.delta / change.seconds, 2)
        evidence.update(evicted_since_last_run=int(change.delta),
                        previous_run=change.previous_at)
        if since_rate > rate:
            rate = since_rate
            summary = f"{int(change.delta)} keys evicted since the last run, " \
                      f"{change.previous_at} ({rate:g}/s; {grew} during this run)"
    yield _for_case(ctx.judge("cache.evictions", rate, summary, evidence=evidence,
                              cause="the working set does not fit in maxmemory, so Redis "
                                    "drops keys the application may still want (hypothesis: "
                                    "maxmemory too small or keys without TTL)"),
                    _more_memory(evidence),
                    *(() if evidence["policy"] == "allkeys-lfu" else ("LFU",)), "Smaller data")


@probe.rule("redis.hit_rate", uses="server", symptoms=["cache.hit_rate.low"],
            thresholds={"cache.hit_rate.low": Threshold(0.70, 0.30, unit="ratio",
                                                        direction="below")})
def hit_rate(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Keyspace hits / lookups over the sampling interval (the lifetime figure beside it)."""
    if not live(facts):
        return
    hits, misses = delta(facts, "keyspace_hits"), delta(facts, "keyspace_misses")
    info = latest_info(facts)
    if hits is None or misses is None or info is None:
        yield _unknown(ctx, "cache.hit_rate.low", facts, "the hit rate")
        return
    total_hits = as_int(info.get("keyspace_hits")) or 0
    total = total_hits + (as_int(info.get("keyspace_misses")) or 0)
    lifetime = round(total_hits / total, 4) if total else None
    evidence = {**where(facts), "hits": hits, "misses": misses,
                "interval_s": as_float(facts.get("interval_s")),
                "lifetime_hit_rate": lifetime, "lifetime_lookups": total}
    lifetime_text = f"{lifetime:.0%} since start" if lifetime is not None else "no lookups yet"
    if hits + misses < MIN_LOOKUPS:
        yield ctx.finding("cache.hit_rate.low", Severity.OK,
                          f"only {hits + misses} lookups during the sample, too few to judge "
                          f"({lifetime_text})", evidence=evidence)
        return
    rate = round(hits / (hits + misses), 4)
    yield ctx.judge("cache.hit_rate.low", rate,
                    f"hit rate {rate:.0%} over the last {evidence['interval_s'] or 0:.1f}s "
                    f"({hits} hits, {misses} misses; {lifetime_text})", evidence=evidence,
                    cause="the application reads keys that are not there: cold cache, TTLs "
                          "shorter than the reuse interval, evictions, or key names that "
                          "never match what was written (hypothesis)")


@probe.rule("redis.fragmentation", uses="server", symptoms=["cache.fragmentation"],
            thresholds={"cache.fragmentation": Threshold(1.4, 2.0, unit="x")})
def fragmentation(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """MEMORY DOCTOR's rules: ratio above 1.4 with over 10 MB wasted; below 1 means swap."""
    if not live(facts):
        return
    info = latest_info(facts)
    if info is None:
        yield _unknown(ctx, "cache.fragmentation", facts, "fragmentation")
        return
    ratio = as_float(info.get("mem_fragmentation_ratio"))
    used, rss = as_int(info.get("used_memory")) or 0, as_int(info.get("used_memory_rss")) or 0
    if ratio is None:
        return
    excess = rss - used
    evidence = {**where(facts), "ratio": ratio, "used_memory": used,
                "used_memory_rss": rss, "excess": excess,
                "excess_human": human_bytes(excess)}
    if used < SMALL_INSTANCE:
        yield ctx.finding("cache.fragmentation", Severity.OK,
                          f"fragmentation {ratio:.2f} is meaningless on {human_bytes(used)} "
                          "of data", observed=ratio, unit="x", evidence=evidence)
    elif ratio < 1:
        yield _for_case(ctx.finding("cache.fragmentation", Severity.WARNING,
                          f"RSS {human_bytes(rss)} below used memory {human_bytes(used)} "
                          f"(ratio {ratio:.2f}): part of Redis is swapped out",
                          observed=ratio, unit="x", evidence=evidence,
                          cause="the machine is short of memory and the kernel swapped Redis "
                                "pages out; every access to them is a disk read"), "Swap")
    elif excess < FRAG_MIN_EXCESS:
        yield ctx.finding("cache.fragmentation", Severity.OK,
                          f"fragmentation {ratio:.2f}, {human_bytes(excess)} beyond the data",
                          observed=ratio, unit="x", evidence=evidence)
    else:
        yield _for_case(ctx.judge("cache.fragmentation", ratio,
                        f"fragmentation {ratio:.2f}: RSS {human_bytes(rss)} for "
                        f"{human_bytes(used)} of data ({human_bytes(excess)} wasted)",
                        evidence=evidence,
                        cause="many keys were deleted or resized and the allocator could not "
                              "give the freed pages back (hypothesis: a churn of mixed-size "
                              "values)"), "Fragmentation")


def _for_case(finding: Finding, *cases: str) -> Finding:
    """`finding` with only the runbook's Fix steps labelled with one of `cases`
    ("Swap", "Fragmentation"): defragmenting does nothing for a swapped-out server, and
    setting the eviction policy a server already has does nothing at all."""
    if not finding.is_problem:
        return finding
    from stackmedic.runbooks import fill, fix_steps, load_runbook

    labels = tuple(f"{case}:" for case in cases)
    steps = tuple(fill(step, finding) for step in fix_steps(load_runbook(finding.symptom))
                  if step.startswith(labels))
    return replace(finding, remedy=Remedy(runbook=finding.symptom, steps=steps))


@probe.rule("redis.bigkeys", uses="server", symptoms=["cache.bigkeys"], cost="moderate",
            thresholds={"cache.bigkeys": Threshold(10 * 1024**2, 100 * 1024**2,
                                                   unit="bytes")})
def bigkeys(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Keys above the size threshold among those sampled with SCAN + MEMORY USAGE."""
    sample = facts.get("bigkeys") if live(facts) else None
    if not isinstance(sample, dict):
        return
    warning = ctx.threshold("cache.bigkeys").breached() or float("inf")
    largest = records(sample.get("largest"))
    scope = (f"{sample.get('scanned')} keys sampled"
             f"{'' if sample.get('complete') else ' (partial: key or time budget reached)'}")
    base = {k: sample.get(k) for k in ("scanned", "complete", "max_keys", "budget_s",
                                       "elapsed_s", "per_type")} | where(facts)
    big = [k for k in largest if (as_int(k.get("bytes")) or 0) >= warning]
    for key in big:
        size = as_int(key.get("bytes")) or 0
        yield ctx.judge("cache.bigkeys", size,
                        f"key {key.get('key')!r} ({key.get('type')}) uses {human_bytes(size)}; "
                        f"{scope}", evidence={**base, "key": key.get("key"),
                                              # shell-quoted for the runbook's commands:
                                              # key names are data, and may hold quotes
                                              "key_arg": shlex.quote(str(key.get("key"))),
                                              "type": key.get("type"), "bytes": size,
                                              "largest": largest},
                        identity=("key",),
                        cause="one key holds a large collection or value: every read, write, "
                              "expiry or migration of it blocks the server and the network")
    if not big:
        top = largest[0] if largest else {}
        size = as_int(top.get("bytes")) or 0
        yield ctx.judge("cache.bigkeys", size,
                        f"largest sampled key {human_bytes(size)}"
                        f"{' (' + str(top.get('key')) + ')' if top else ''}; {scope}",
                        evidence={**base, "largest": largest})
