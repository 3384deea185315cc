"""Prometheus text exposition of a diagnostics snapshot, with Resilience4j metric names.

Written by hand rather than through prometheus_client so a service needs no extra
dependency and the names match what Resilience4j users already graph:
`resilience4j_circuitbreaker_state{name,state}`, `..._failure_rate`,
`..._slow_call_rate`, `..._buffered_calls{kind}`, `..._not_permitted_calls_total`;
for a `Bulkhead` registered as a pool (its snapshot has `max_waiting`),
`resilience4j_bulkhead_available_concurrent_calls` and `..._max_allowed_concurrent_calls`;
`resilience4j_retry_calls_total{name,kind}` (a counter; kind is `successful_without_retry`,
`successful_with_retry`, `failed_with_retry` or `failed_without_retry`);
`resilience4j_ratelimiter_available_permissions` and `..._waiting_threads`;
plus `stackmedic_queue_*`, `stackmedic_retry_*` (with `stackmedic_retry_budget_denied`),
`stackmedic_operation_latency_seconds` (a summary with quantiles), `stackmedic_pool_*` and
`stackmedic_degradation_level`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["exposition"]

_STATES = ("closed", "open", "half_open", "disabled", "forced_open", "metrics_only")
_QUEUE = ("size", "capacity", "utilisation", "workers", "busy_workers", "processed", "failed",
          "timed_out", "rejected", "rejected_recent", "delayed")
_RETRY = ("calls", "retries", "exhausted")
_RETRY_KINDS = ("successful_without_retry", "successful_with_retry", "failed_with_retry",
                "failed_without_retry")
_POOL = ("in_use", "max", "waiting", "rejected")
_LEVELS = ("full", "degraded", "minimal", "maintenance")


def exposition(snapshot: Mapping[str, Any]) -> str:
    """The whole snapshot as Prometheus text format 0.0.4."""
    return "".join(f"{line}\n" for line in _lines(snapshot))


def _lines(doc: Mapping[str, Any]) -> Iterator[str]:
    prefix = "resilience4j_circuitbreaker"
    breakers = _section(doc, "breakers")
    if breakers:
        yield f"# TYPE {prefix}_state gauge"
        for name, b in breakers.items():
            for state in _STATES:
                yield _sample(f"{prefix}_state", {"name": name, "state": state},
                              1 if b.get("state") == state else 0)
        for key in ("failure_rate", "slow_call_rate"):
            yield f"# TYPE {prefix}_{key} gauge"
            for name, b in breakers.items():
                # Resilience4j reports -1 while below the minimum number of calls.
                value = b.get(key)
                yield _sample(f"{prefix}_{key}", {"name": name},
                              -1 if value is None else value)
        yield f"# TYPE {prefix}_buffered_calls gauge"
        for name, b in breakers.items():
            failed = _num(b.get("failed_calls"))
            total = _num(b.get("buffered_calls"))
            yield _sample(f"{prefix}_buffered_calls", {"name": name, "kind": "failed"}, failed)
            yield _sample(f"{prefix}_buffered_calls", {"name": name, "kind": "successful"},
                          total - failed)
        yield f"# TYPE {prefix}_not_permitted_calls_total counter"
        for name, b in breakers.items():
            yield _sample(f"{prefix}_not_permitted_calls_total", {"name": name},
                          b.get("not_permitted_calls"))
    yield from _gauges(_section(doc, "queues"), "stackmedic_queue", "name", _QUEUE)
    retries = _section(doc, "retries")
    yield from _gauges(retries, "stackmedic_retry", "name", _RETRY)
    # A Retry reports its budget's refusals as budget_denied, a RetryBudget as denied.
    yield from _gauges({name: {"budget_denied": r.get("budget_denied", r.get("denied"))}
                        for name, r in retries.items() if "budget_denied" in r or "denied" in r},
                       "stackmedic_retry", "name", ("budget_denied",))
    yield from _retry_outcomes(retries)
    yield from _gauges({name: {"available_permissions": r.get("available_permissions"),
                               "waiting_threads": r.get("waiting")}
                        for name, r in _section(doc, "rate_limiters").items()},
                       "resilience4j_ratelimiter", "name",
                       ("available_permissions", "waiting_threads"))
    pools = _section(doc, "pools")
    yield from _gauges(pools, "stackmedic_pool", "name", _POOL)
    yield from _bulkheads({name: p for name, p in pools.items() if "max_waiting" in p})
    latency = _section(doc, "latency")
    if latency:
        metric = "stackmedic_operation_latency_seconds"
        yield f"# TYPE {metric} summary"
        for op, stats in latency.items():
            for q in ("0.5", "0.95", "0.99"):
                key = {"0.5": "p50", "0.95": "p95", "0.99": "p99"}[q]
                yield _sample(metric, {"operation": op, "quantile": q}, stats.get(key))
            count = _num(stats.get("count"))
            yield _sample(f"{metric}_count", {"operation": op}, count)
            yield _sample(f"{metric}_sum", {"operation": op},
                          _num(stats.get("mean")) * count)
        yield "# TYPE stackmedic_operation_errors gauge"
        for op, stats in latency.items():
            yield _sample("stackmedic_operation_errors", {"operation": op}, stats.get("errors"))
    degradation = doc.get("degradation")
    if isinstance(degradation, Mapping) and degradation.get("level") in _LEVELS:
        yield "# TYPE stackmedic_degradation_level gauge"
        yield _sample("stackmedic_degradation_level", {},
                      _LEVELS.index(str(degradation["level"])))


def _retry_outcomes(retries: Mapping[str, Mapping[str, Any]]) -> Iterator[str]:
    """Resilience4j's lifetime retry outcome counters (a `Retry` has them, a budget not)."""
    metric = "resilience4j_retry_calls_total"
    rows = {name: r for name, r in retries.items() if all(k in r for k in _RETRY_KINDS)}
    if rows:
        yield f"# TYPE {metric} counter"
        for name, r in rows.items():
            for kind in _RETRY_KINDS:
                yield _sample(metric, {"name": name, "kind": kind}, r.get(kind))


def _bulkheads(bulkheads: Mapping[str, Mapping[str, Any]]) -> Iterator[str]:
    """Resilience4j's semaphore-bulkhead gauges: free slots and the slot count."""
    prefix = "resilience4j_bulkhead"
    yield from _gauges({name: {"available_concurrent_calls":
                               int(_num(b.get("max")) - _num(b.get("in_use"))),
                               "max_allowed_concurrent_calls": b.get("max")}
                        for name, b in bulkheads.items()},
                       prefix, "name",
                       ("available_concurrent_calls", "max_allowed_concurrent_calls"))


def _gauges(section: Mapping[str, Mapping[str, Any]], prefix: str, label: str,
            keys: tuple[str, ...]) -> Iterator[str]:
    for key in keys:
        rows = [(name, row.get(key)) for name, row in section.items() if key in row]
        if rows:
            yield f"# TYPE {prefix}_{key} gauge"
            for name, value in rows:
                yield _sample(f"{prefix}_{key}", {label: name}, value)


def _section(doc: Mapping[str, Any], key: str) -> dict[str, Mapping[str, Any]]:
    value = doc.get(key)
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, Mapping)}


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0


def _sample(metric: str, labels: Mapping[str, str], value: Any) -> str:
    rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    text = "NaN" if math.isnan(number) else repr(float(number)) if isinstance(number, float) \
        else str(number)
    return f"{metric}{{{rendered}}} {text}" if rendered else f"{metric} {text}"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
