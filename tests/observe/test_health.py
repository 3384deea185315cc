"""The health endpoint: IETF shape, status codes, timeouts and caching, over real HTTP."""

from __future__ import annotations

import asyncio

import httpx

from stackmedic.observe import CheckResult, Health, ObserveApp, disk_check, memory_check
from tests.app.servers import serve


def test_all_passing_checks_answer_200_in_health_json_shape() -> None:
    """Passing checks give status pass, 200 and checks keyed component:measurement."""
    health = Health(service_id="shop", version="1.2")
    health.add("disk:utilization", disk_check("/", warn=1.0, fail=1.0))
    health.add("memory:utilization", memory_check(warn=1.0, fail=1.0))
    health.add("cache:responseTime", lambda: True)
    with serve(ObserveApp(health=health)) as app:
        response = httpx.get(app.url + "/health", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/health+json"
    body = response.json()
    assert (body["status"], body["serviceId"], body["version"]) == ("pass", "shop", "1.2")
    disk = body["checks"]["disk:utilization"][0]
    assert disk["status"] == "pass" and disk["observedUnit"] == "ratio"
    assert 0 < disk["observedValue"] < 1 and disk["time"].endswith("Z")
    assert body["checks"]["cache:responseTime"][0]["observedUnit"] == "ms"


def test_warn_is_200_and_fail_is_503_with_the_worst_status() -> None:
    """A warning check keeps 200 with status warn; a failing one turns it into 503 fail."""
    warn = Health(cache_seconds=0)
    warn.add("queue:depth", lambda: CheckResult("warn", 90, "%", "queue 90% full"))
    fail = Health(cache_seconds=0)
    fail.add("queue:depth", lambda: CheckResult("warn", 90, "%"))
    fail.add("db:responseTime", lambda: False)
    assert asyncio.run(warn.run())[0] == "warn"
    with serve(ObserveApp(health=fail)) as app:
        response = httpx.get(app.url + "/health", timeout=10)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["db:responseTime"][0]["status"] == "fail"


def test_a_hanging_or_raising_check_fails_without_blocking_the_others() -> None:
    """A check past its timeout and one that raises both report fail with an output line."""
    async def hangs() -> bool:
        await asyncio.sleep(60)
        return True

    health = Health(timeout=0.2, cache_seconds=0)
    health.add("slow:responseTime", hangs)
    health.add("broken:responseTime", lambda: 1 / 0)
    health.add("fine:responseTime", lambda: True)
    status, body = asyncio.run(health.run())
    assert status == "fail"
    assert "timed out" in body["checks"]["slow:responseTime"][0]["output"]
    assert "ZeroDivisionError" in body["checks"]["broken:responseTime"][0]["output"]
    assert body["checks"]["fine:responseTime"][0]["status"] == "pass"


def test_results_are_cached_for_cache_seconds() -> None:
    """Two runs within the cache period call each check once."""
    calls: list[int] = []
    health = Health(cache_seconds=60)
    health.add("db:responseTime", lambda: calls.append(1) or True)

    async def twice() -> None:
        await health.run()
        await health.run()

    asyncio.run(twice())
    assert calls == [1]


def test_postgres_and_redis_checks_fail_on_a_closed_port() -> None:
    """The built-in PostgreSQL and Redis checks report fail when nothing listens."""
    from stackmedic.observe import postgres_check, redis_check
    from tests.fixtures.ports import free_port

    port = free_port()
    health = Health(cache_seconds=0, timeout=5)
    health.add("postgres:responseTime", postgres_check(f"postgresql://x@127.0.0.1:{port}/x"))
    health.add("redis:responseTime", redis_check(f"redis://127.0.0.1:{port}/0"))
    status, body = asyncio.run(health.run())
    assert status == "fail"
    assert body["checks"]["postgres:responseTime"][0]["output"]
    assert body["checks"]["redis:responseTime"][0]["status"] == "fail"


def test_postgres_and_redis_checks_pass_against_real_servers(pg_shared, redis_factory) -> None:  # type: ignore[no-untyped-def]
    """The built-in checks pass with a round-trip time against live throwaway servers."""
    from stackmedic.observe import postgres_check, redis_check

    redis = redis_factory()
    health = Health(cache_seconds=0, timeout=10)
    health.add("postgres:responseTime", postgres_check(pg_shared.dsn()))
    health.add("redis:responseTime", redis_check(redis.url))
    status, body = asyncio.run(health.run())
    assert status == "pass", body
    assert body["checks"]["redis:responseTime"][0]["observedUnit"] == "ms"


def test_concurrent_requests_share_one_run_of_the_checks() -> None:
    """Ten simultaneous health requests run each check once, even with caching off."""
    calls: list[int] = []

    async def slow_check() -> bool:
        calls.append(1)
        await asyncio.sleep(0.05)
        return True

    health = Health(cache_seconds=0)
    health.add("db:responseTime", slow_check)

    async def burst() -> set[str]:
        results = await asyncio.gather(*(health.run() for _ in range(10)))
        return {status for status, _ in results}

    assert asyncio.run(burst()) == {"pass"}
    assert calls == [1]
