"""Fallbacks (static, computed, last good result) and service-wide degradation levels.

    recommendations = Fallback("recs", cache_ttl=300, default=[])
    items = recommendations.call(fetch_recommendations, user_id)   # last good on failure

    degradation = DegradationManager({"recommendations": Level.DEGRADED,
                                      "checkout": Level.MINIMAL})
    if degradation.enabled("recommendations"): ...

A feature mapped to a level stays on while the service runs at that level or a
better one: at DEGRADED, features marked DEGRADED or MINIMAL still run, FULL-only
extras are off; MAINTENANCE turns everything off. The level is what an operator
(or the admin endpoint) sets when a dependency is known to be down.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar

from stackmedic.resilience._decorate import decorate

__all__ = ["DegradationManager", "Fallback", "Level"]

P = ParamSpec("P")
T = TypeVar("T")
_MISSING: Any = object()


class Fallback(Generic[T]):
    """On failure return the last good result for the same arguments (younger than
    `cache_ttl`), else `handler(exc, *args)` if given, else `default`; else re-raise."""

    def __init__(self, name: str, *, default: T = _MISSING,
                 handler: Callable[..., T] | None = None, cache_ttl: float | None = None,
                 on: tuple[type[BaseException], ...] = (Exception,), cache_size: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._default = default
        self._handler = handler
        self._ttl = cache_ttl
        self._on = on
        self._size = cache_size
        self._clock = clock
        self._cache: dict[Hashable, tuple[float, T]] = {}
        self._lock = threading.Lock()
        self.fallbacks = 0

    def _remember(self, key: Hashable, value: T) -> None:
        if self._ttl is None:
            return
        with self._lock:
            self._cache.pop(key, None)
            self._cache[key] = (self._clock(), value)
            while len(self._cache) > self._size:  # oldest first: dicts keep insertion order
                del self._cache[next(iter(self._cache))]

    def _recover(self, key: Hashable, exc: BaseException, args: tuple[Any, ...]) -> T:
        if not isinstance(exc, self._on):
            raise exc
        self.fallbacks += 1
        if self._ttl is not None:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and self._clock() - hit[0] <= self._ttl:
                return hit[1]
        if self._handler is not None:
            return self._handler(exc, *args)
        if self._default is not _MISSING:
            return self._default
        raise exc

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        key = _key(args, kwargs)
        try:
            value = func(*args, **kwargs)
        except Exception as exc:
            return self._recover(key, exc, args)
        self._remember(key, value)
        return value

    async def call_async(self, func: Callable[P, Awaitable[T]], /, *args: P.args,
                         **kwargs: P.kwargs) -> T:
        key = _key(args, kwargs)
        try:
            value = await func(*args, **kwargs)
        except Exception as exc:
            return self._recover(key, exc, args)
        self._remember(key, value)
        return value

    def __call__(self, func: Callable[P, T]) -> Callable[P, T]:
        """Decorator form for plain and `async def` functions."""
        return decorate(self, func)


def _key(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Hashable:
    try:
        key = (args, tuple(sorted(kwargs.items())))
        hash(key)
        return key
    except TypeError:  # unhashable arguments: one shared slot
        return None


class Level(enum.IntEnum):
    """Service levels, best first."""

    FULL = 0
    DEGRADED = 1
    MINIMAL = 2
    MAINTENANCE = 3


class DegradationManager:
    """The service's current level and which named features it allows."""

    def __init__(self, features: Mapping[str, Level] | None = None,
                 level: Level = Level.FULL) -> None:
        self._features = dict(features or {})
        self.level = level
        self.changed_at = time.time()
        self._listeners: list[Callable[[Level, Level], object]] = []

    def feature(self, name: str, lowest: Level) -> None:
        """Keep `name` on down to level `lowest` (FULL: only when nothing is degraded)."""
        self._features[name] = lowest

    def enabled(self, name: str) -> bool:
        """Whether feature `name` runs at the current level (unknown features: FULL only)."""
        if self.level is Level.MAINTENANCE:
            return False
        return self.level <= self._features.get(name, Level.FULL)

    def set_level(self, level: Level | str) -> None:
        """Change the level (`"degraded"` or `Level.DEGRADED`); KeyError for unknown names."""
        new = level if isinstance(level, Level) else Level[level.upper()]
        old, self.level = self.level, new
        self.changed_at = time.time()
        for listener in self._listeners:
            listener(old, new)

    def add_listener(self, listener: Callable[[Level, Level], object]) -> None:
        self._listeners.append(listener)

    def metrics(self) -> dict[str, Any]:
        return {"level": self.level.name.lower(), "changed_at": self.changed_at,
                "disabled_features": sorted(f for f in self._features if not self.enabled(f))}
