"""Health checks in the IETF "Health Check Response Format for HTTP APIs" draft shape.

    health = Health(service_id="shop")
    health.add("postgres:responseTime", postgres_check(dsn))
    health.add("disk:utilization", disk_check("/var/lib/shop"))
    status, body = await health.run()     # "pass" | "warn" | "fail", the JSON document

Checks run concurrently, each under its own timeout (a check that hangs is `fail`
with output "timed out"), and results are cached for `cache_seconds` so a load
balancer polling every 100 ms does not become the database's busiest client.
A check is any function, sync or async, returning a `CheckResult` or a bool.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

__all__ = [
    "CheckResult",
    "Health",
    "HealthCheck",
    "disk_check",
    "memory_check",
    "postgres_check",
    "redis_check",
]

Status = Literal["pass", "warn", "fail"]
_ORDER = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One measurement: its status, the number behind it and a line for humans."""

    status: Status
    observed_value: float | int | str | None = None
    observed_unit: str | None = None
    output: str = ""


HealthCheck: TypeAlias = Callable[[], "CheckResult | bool | Awaitable[CheckResult | bool]"]


@dataclass(frozen=True, slots=True)
class _Registered:
    key: str
    func: HealthCheck
    timeout: float
    component_type: str | None


class Health:
    """A set of named checks; `run()` gives the overall status and the response body."""

    def __init__(self, *, service_id: str | None = None, version: str | None = None,
                 timeout: float = 2.0, cache_seconds: float = 1.0) -> None:
        self.service_id = service_id
        self.version = version
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._checks: list[_Registered] = []
        self._cached: tuple[float, Status, dict[str, Any]] | None = None
        self._running: asyncio.Task[tuple[Status, dict[str, Any]]] | None = None

    def add(self, key: str, check: HealthCheck, *, timeout: float | None = None,
            component_type: str | None = None) -> None:
        """Register `check` under `key` ("component:measurement", e.g. "redis:responseTime")."""
        if ":" not in key:
            raise ValueError(f"health check key {key!r} must look like 'component:measurement'")
        self._checks.append(_Registered(key, check, timeout or self.timeout, component_type))

    async def run(self) -> tuple[Status, dict[str, Any]]:
        """Run every check (or reuse a result younger than `cache_seconds`).

        Requests arriving while a run is in flight wait for that run instead of
        starting their own, so a burst of probes costs the dependencies one check each.
        """
        now = time.monotonic()
        if self._cached and now - self._cached[0] < self.cache_seconds:
            return self._cached[1], self._cached[2]
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._run_checks())
        return await asyncio.shield(self._running)

    async def _run_checks(self) -> tuple[Status, dict[str, Any]]:
        results = await asyncio.gather(*(self._one(c) for c in self._checks))
        status: Status = "pass"
        checks: dict[str, list[dict[str, Any]]] = {}
        for registered, result in zip(self._checks, results, strict=True):
            if _ORDER[result.status] > _ORDER[status]:
                status = result.status
            entry: dict[str, Any] = {"status": result.status, "time": _utc_now()}
            component = registered.key.split(":", 1)[0]
            entry["componentId"] = component
            if registered.component_type:
                entry["componentType"] = registered.component_type
            if result.observed_value is not None:
                entry["observedValue"] = result.observed_value
            if result.observed_unit:
                entry["observedUnit"] = result.observed_unit
            if result.output:
                entry["output"] = result.output[:500]
            checks.setdefault(registered.key, []).append(entry)
        body: dict[str, Any] = {"status": status, "checks": checks}
        if self.service_id:
            body["serviceId"] = self.service_id
        if self.version:
            body["version"] = self.version
        self._cached = (time.monotonic(), status, body)
        return status, body

    async def _one(self, registered: _Registered) -> CheckResult:
        start = time.monotonic()
        try:
            outcome = await asyncio.wait_for(_invoke(registered.func), registered.timeout)
        except TimeoutError:
            return CheckResult("fail", output=f"timed out after {registered.timeout:g}s")
        except Exception as err:  # a failing check is a result, not a 500
            return CheckResult("fail", output=f"{type(err).__name__}: {err}")
        if isinstance(outcome, CheckResult):
            return outcome
        elapsed_ms = round((time.monotonic() - start) * 1000, 3)
        return CheckResult("pass" if outcome else "fail", elapsed_ms, "ms")


async def _invoke(func: HealthCheck) -> CheckResult | bool:
    if inspect.iscoroutinefunction(func):
        return await func()  # type: ignore[no-any-return]
    # Sync checks run in a thread so a blocking driver call cannot stall the server.
    result = await asyncio.to_thread(func)
    if inspect.isawaitable(result):
        return await result
    return result


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ratio_status(ratio: float, warn: float, fail: float) -> Status:
    return "fail" if ratio >= fail else "warn" if ratio >= warn else "pass"


def disk_check(path: str = "/", *, warn: float = 0.85, fail: float = 0.95) -> HealthCheck:
    """Filesystem usage of `path` as a fraction (warn/fail at the given ratios)."""

    def check() -> CheckResult:
        import shutil

        usage = shutil.disk_usage(path)
        ratio = usage.used / usage.total if usage.total else 0.0
        return CheckResult(_ratio_status(ratio, warn, fail), round(ratio, 4), "ratio",
                           f"{path} {ratio:.0%} used")

    return check


def memory_check(*, warn: float = 0.85, fail: float = 0.95) -> HealthCheck:
    """Host memory in use as a fraction (from /proc/meminfo; psutil elsewhere)."""

    def check() -> CheckResult:
        try:
            with open("/proc/meminfo", encoding="ascii") as fh:
                info = {k: int(v.split()[0]) for k, v in
                        (line.split(":", 1) for line in fh.read(16384).splitlines() if ":" in line)}
            ratio = 1 - info["MemAvailable"] / info["MemTotal"]
        except (OSError, KeyError, ValueError):
            import psutil

            ratio = psutil.virtual_memory().percent / 100
        return CheckResult(_ratio_status(ratio, warn, fail), round(ratio, 4), "ratio",
                           f"memory {ratio:.0%} used")

    return check


def postgres_check(dsn: str, *, connect_timeout: float = 2.0) -> HealthCheck:
    """`SELECT 1` over a new connection; observed value is the round trip in ms.

    psycopg is imported here, when the check is built, not on its first run: importing
    it takes ~150 ms, which inside the async check would stall the event loop and every
    request waiting on it."""
    import psycopg

    async def check() -> CheckResult:
        start = time.monotonic()
        try:
            conn = await psycopg.AsyncConnection.connect(
                dsn, connect_timeout=max(1, int(connect_timeout)), autocommit=True)
        except psycopg.Error as err:
            return CheckResult("fail", output=_first_line(err))
        async with conn:
            await conn.execute("SELECT 1")
        return CheckResult("pass", round((time.monotonic() - start) * 1000, 3), "ms")

    return check


def redis_check(url: str, *, timeout: float = 2.0) -> HealthCheck:
    """`PING`; observed value is the round trip in ms."""

    async def check() -> CheckResult:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        client = aioredis.Redis.from_url(url, socket_timeout=timeout,
                                         socket_connect_timeout=timeout)
        start = time.monotonic()
        try:
            await client.ping()
        except RedisError as err:
            return CheckResult("fail", output=_first_line(err))
        finally:
            await client.aclose()
        return CheckResult("pass", round((time.monotonic() - start) * 1000, 3), "ms")

    return check


def _first_line(err: BaseException) -> str:
    from stackmedic.redact import redact_text

    return redact_text(str(err).strip().split("\n", 1)[0] or type(err).__name__)
