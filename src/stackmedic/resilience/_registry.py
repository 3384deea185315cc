"""Named breakers built from named shared configs, managed together at run time.

The registry is what /diagnostics reads and what the admin endpoint acts on: the
guides' "check the breaker", "manually reset it" and "adjust thresholds" steps are
`metrics()`, `reset(name)` and `reconfigure(name, ...)`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from stackmedic.resilience._breaker import CircuitBreaker
from stackmedic.resilience._breaker_config import BreakerConfig, BreakerMetrics, State
from stackmedic.resilience._events import BreakerListener

__all__ = ["BreakerRegistry"]


class BreakerRegistry:
    """Breakers by name; `breaker(name, config="db")` creates on first use."""

    def __init__(self, configs: Mapping[str, BreakerConfig] | None = None, *,
                 default: BreakerConfig | None = None) -> None:
        self._configs = dict(configs or {})
        self._configs.setdefault("default", default or BreakerConfig())
        self._breakers: dict[str, CircuitBreaker] = {}
        self._listeners: list[BreakerListener] = []
        self._lock = threading.Lock()

    def add_config(self, name: str, config: BreakerConfig) -> None:
        """Register a shared config other breakers can name."""
        self._configs[name] = config

    def breaker(self, name: str, config: str | BreakerConfig = "default") -> CircuitBreaker:
        """The breaker called `name`, created with `config` (a name or a config) if new."""
        existing = self._breakers.get(name)
        if existing is not None:
            return existing
        with self._lock:
            if name not in self._breakers:
                resolved = self._configs[config] if isinstance(config, str) else config
                created = CircuitBreaker(name, resolved)
                for listener in self._listeners:
                    created.add_listener(listener)
                self._breakers[name] = created
            return self._breakers[name]

    def __getitem__(self, name: str) -> CircuitBreaker:
        return self._breakers[name]

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)

    def add_listener(self, listener: BreakerListener) -> None:
        """Listen to every breaker, present and future."""
        with self._lock:
            self._listeners.append(listener)
            for breaker in self._breakers.values():
                breaker.add_listener(listener)

    def metrics(self) -> dict[str, BreakerMetrics]:
        """A snapshot of every breaker, by name."""
        return {b.name: b.metrics() for b in self}

    def reset(self, name: str) -> None:
        self[name].reset()

    def transition(self, name: str, state: State | str) -> None:
        """Force breaker `name` into `state` (`"forced_open"`, `"disabled"`…)."""
        self[name].transition_to(state if isinstance(state, State) else State[state.upper()])

    def reconfigure(self, name: str, **changes: Any) -> None:
        """Change one breaker's thresholds at run time."""
        self[name].reconfigure(**changes)
