"""The /diagnostics snapshot: every resilience primitive and tracker in one JSON document.

    diagnostics = Diagnostics(service="shop")
    diagnostics.add_breakers(registry)
    diagnostics.add_queue(orders_queue)
    diagnostics.add_latency(tracker)
    diagnostics.add_pool("db", lambda: {"in_use": pool.in_use, "max": pool.max_size})
    diagnostics.add_rate_limiter(limiter)
    diagnostics.register("jobs", lambda: {"stuck": 0})
    diagnostics.add_entities()              # undispatched domain events, this process
    diagnostics.add_event_store(store)      # counters, latency, head, checkpoints

The document is the contract with the doctor's `app` component kind
(`stackmedic.probes.app`), which turns it into findings. Its top-level keys:

    stackmedic, service, time     version, service name, UTC time of the snapshot
    breakers    {name: BreakerMetrics.to_dict()}
    queues      {name: {size, capacity, utilisation, workers, busy_workers, processed,
                        failed, timed_out, rejected, rejected_recent, ...}}
    retries     {name: {calls, retries, retries_per_call, budget_ratio, exhausted, ...}}
    latency     {operation: {count, errors, error_rate, mean, p50, p95, p99, max}}
    degradation {level, disabled_features}        (when a DegradationManager is set)
    pools       {name: {in_use, max, waiting, ...}}
    rate_limiters {name: {available_permissions, waiting, permitted, rejected, ...}}
    components  {name: whatever the registered function returns}

A source that raises is reported as `{"error": "..."}` in its place, never as a 500.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from stackmedic.eventstore import EventStore
    from stackmedic.resilience import BreakerRegistry, DegradationManager

__all__ = ["Diagnostics", "MetricsSource"]


class MetricsSource(Protocol):
    """Anything with a name and a `metrics()` snapshot (queues, retry budgets, ...)."""

    @property
    def name(self) -> str: ...

    def metrics(self) -> Any: ...


class _Latency(Protocol):
    def snapshot(self) -> dict[str, dict[str, Any]]: ...


class Diagnostics:
    """Collects the sources a service registers and snapshots them on demand."""

    def __init__(self, *, service: str | None = None) -> None:
        self.service = service
        self.breaker_registries: list[BreakerRegistry] = []
        self._queues: dict[str, MetricsSource] = {}
        self._retries: dict[str, MetricsSource] = {}
        self._latency: list[_Latency] = []
        self.degradation: DegradationManager | None = None
        self._pools: dict[str, Callable[[], Mapping[str, Any]]] = {}
        self._rate_limiters: dict[str, MetricsSource] = {}
        self._components: dict[str, Callable[[], Any]] = {}

    def add_breakers(self, registry: BreakerRegistry) -> None:
        """A `BreakerRegistry` (its breakers appear under `breakers`)."""
        self.breaker_registries.append(registry)

    def add_queue(self, queue: MetricsSource) -> None:
        self._queues[queue.name] = queue

    def add_retry(self, budget: MetricsSource) -> None:
        """A `Retry` or `RetryBudget` (appears under `retries`)."""
        self._retries[budget.name] = budget

    def add_latency(self, tracker: _Latency) -> None:
        self._latency.append(tracker)

    def set_degradation(self, manager: DegradationManager) -> None:
        self.degradation = manager

    def add_pool(self, name: str, snapshot: Callable[[], Mapping[str, Any]]) -> None:
        """A connection pool: `snapshot()` returns at least `in_use` and `max`."""
        self._pools[name] = snapshot

    def add_rate_limiter(self, limiter: MetricsSource) -> None:
        """A `RateLimiter` (appears under `rate_limiters`)."""
        self._rate_limiters[limiter.name] = limiter

    def register(self, name: str, snapshot: Callable[[], Any]) -> None:
        """Any other state (domain-event counts, projection lag...) under `components`."""
        self._components[name] = snapshot

    def add_entities(self, name: str = "entities") -> None:
        """Undispatched domain events of this process (`stackmedic.entities.diagnostics`).

        Imported here, not with this module: a service that never uses entities does
        not load them.
        """
        from stackmedic import entities

        self.register(name, entities.diagnostics)

    def add_event_store(self, store: EventStore, name: str = "eventstore") -> None:
        """An event store's counters, append latency, head and checkpoints
        (`stackmedic.eventstore.diagnostics(store)`, read at each snapshot)."""
        from stackmedic import eventstore

        self.register(name, functools.partial(eventstore.diagnostics, store))

    def snapshot(self) -> dict[str, Any]:
        """The whole document (see the module docstring for its keys)."""
        from stackmedic import __version__

        errors: list[str] = []
        breakers: dict[str, Any] = {}
        for registry in self.breaker_registries:
            breakers.update({name: m.to_dict()
                             for name, m in _merge(errors, registry.metrics).items()})
        latency: dict[str, Any] = {}
        for tracker in self._latency:
            latency.update(_merge(errors, tracker.snapshot))
        doc: dict[str, Any] = {
            "stackmedic": __version__,
            "service": self.service,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "epoch": time.time(),
            "breakers": breakers,
            "queues": {n: _as_dict(_safe(q.metrics)) for n, q in self._queues.items()},
            "retries": {n: _as_dict(_safe(r.metrics)) for n, r in self._retries.items()},
            "latency": latency,
            "pools": {n: _as_dict(_safe(f)) for n, f in self._pools.items()},
            "rate_limiters": {n: _as_dict(_safe(r.metrics))
                              for n, r in self._rate_limiters.items()},
            "components": {n: _safe(f) for n, f in self._components.items()},
        }
        if self.degradation is not None:
            doc["degradation"] = _safe(self.degradation.metrics)
        if errors:
            doc["errors"] = errors
        return doc


def _as_dict(value: Any) -> Any:
    """Dataclass snapshots and read-only mappings as plain JSON-able dicts."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return dict(value) if isinstance(value, Mapping) else value


def _merge(errors: list[str], func: Callable[[], Mapping[str, Any]]) -> Mapping[str, Any]:
    """A mapping to merge into a section; a failure goes to `errors` instead."""
    try:
        return dict(func())
    except Exception as err:  # one broken source must not hide the others
        errors.append(_describe(err))
        return {}


def _safe(func: Callable[[], Any]) -> Any:
    try:
        return func()
    except Exception as err:  # one broken source must not hide the others
        return {"error": _describe(err)}


def _describe(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"[:300]
