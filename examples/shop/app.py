"""The shop: a small FastAPI service wired with stackmedic's resilience and observe parts.

    uvicorn --factory examples.shop.app:from_env --port 8000

    SHOP_DSN=postgresql://...  SHOP_REDIS=redis://...  SHOP_PAYMENTS=http://...
    SHOP_ADMIN_TOKEN=...  (optional: enables POST /admin/...)

What it shows, one primitive per route:

    GET  /products/{id}   Redis cache behind breaker "cache", PostgreSQL on a miss or
                          when the cache is down (Fallback); latency tracked; RateLimiter
                          "products": 429 + Retry-After beyond its rate
    GET  /report?seconds  holds one pooled PostgreSQL connection (pool "db" in diagnostics)
                          inside Bulkhead "reports", so slow reports cannot take the whole
                          pool: 503 when every report slot is busy
    POST /orders          WorkQueue "orders" with priorities and acting backpressure:
                          202, or 503 + Retry-After when the queue turns work away;
                          traced as "PlaceOrder" (recent traces under components.traces)
    POST /pay/{order}     pipeline "payments": retry with a shared budget, breaker,
                          time limit; 503 + Retry-After while the breaker is open
    GET  /health, /diagnostics, /metrics, POST /admin/...   stackmedic.observe.ObserveApp
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException, Response
from psycopg_pool import AsyncConnectionPool

from stackmedic.observe import (
    Diagnostics,
    Health,
    LatencyTracker,
    ObserveApp,
    Tracer,
    disk_check,
    postgres_check,
    redis_check,
)
from stackmedic.resilience import (
    BreakerConfig,
    BreakerRegistry,
    Bulkhead,
    BulkheadFullError,
    CircuitOpenError,
    DegradationManager,
    Fallback,
    Level,
    QueueFullError,
    RateLimitedError,
    RateLimiter,
    Retry,
    RetryBudget,
    TimeLimiter,
    WorkQueue,
    pipeline,
)


def create_app(*, dsn: str, redis_url: str, payments_url: str, admin_token: str | None = None,
               order_workers: int = 2, order_capacity: int = 100, order_seconds: float = 0.01,
               order_max_delay: float = 0.2,
               pool_max: int = 4, breaker_minimum_calls: int = 5, report_slots: int = 2,
               product_rate: float = 100.0, product_burst: int = 50) -> ObserveApp:
    """The shop as an ASGI app (FastAPI inside stackmedic's ObserveApp)."""
    tracker = LatencyTracker(window=60)
    tracer = Tracer(capacity=100)
    breakers = BreakerRegistry({
        "remote": BreakerConfig(minimum_calls=breaker_minimum_calls, window_size=20,
                                wait_duration=30, half_open_calls=3),
    })
    cache_breaker = breakers.breaker("cache", "remote")
    payments_breaker = breakers.breaker("payments", "remote")
    budget = RetryBudget("payments", ratio=0.2, min_retries=20)
    payments_retry = Retry("payments", attempts=3, base_delay=0.01, max_delay=0.1,
                           budget=budget)
    payments = pipeline("payments", retry=payments_retry, breaker=payments_breaker,
                        time_limiter=TimeLimiter("payments", 2.0), tracker=tracker)
    degradation = DegradationManager({"recommendations": Level.FULL, "orders": Level.MINIMAL})
    pool = AsyncConnectionPool(dsn, min_size=1, max_size=pool_max, open=False,
                               kwargs={"autocommit": True})
    cache = aioredis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
    gateway = httpx.AsyncClient(base_url=payments_url, timeout=2.0)  # one client: TLS setup is dear
    product_fallback: Fallback[dict[str, Any]] = Fallback("products", cache_ttl=300)
    product_limiter = RateLimiter("products", rate=product_rate, burst=product_burst)
    reports = Bulkhead("reports", max_concurrent=report_slots)  # leaves pool room for /products

    async def handle_order(order: dict[str, Any]) -> None:
        await asyncio.sleep(order_seconds)
        await cache.incr("shop:orders:handled")

    orders: WorkQueue[dict[str, Any]] = WorkQueue(
        "orders", handle_order, capacity=order_capacity, workers=order_workers,
        delay_at=0.8, max_delay=order_max_delay, item_timeout=30)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        await orders.start()
        yield
        await orders.stop(drain=False)
        await pool.close()
        await cache.aclose()
        await gateway.aclose()

    api = FastAPI(title="shop", lifespan=lifespan)

    async def product_from_db(pid: int) -> dict[str, Any]:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT %s::int, 'widget ' || %s::text, 9.99",
                                     (pid, pid))
            row = await cur.fetchone()
        assert row is not None
        return {"id": row[0], "name": row[1], "price": float(row[2])}

    async def product_from_cache(pid: int) -> dict[str, Any]:
        name = await cache.get(f"shop:product:{pid}")
        if name is None:
            product = await product_from_db(pid)
            await cache.set(f"shop:product:{pid}", product["name"], ex=60)
            return product
        text = name.decode() if isinstance(name, bytes) else str(name)
        return {"id": pid, "name": text, "price": 9.99}

    @api.get("/products/{pid}")
    async def product(pid: int, response: Response) -> dict[str, Any]:
        try:
            product_limiter.reserve()
        except RateLimitedError as err:
            response.status_code = 429
            response.headers["Retry-After"] = str(math.ceil(err.retry_after or 1))
            return {"error": str(err)}
        async with tracker.track("products.get"):
            try:
                return await cache_breaker.call_async(product_from_cache, pid)
            except Exception:  # cache down or breaker open: the database still answers
                return await product_fallback.call_async(product_from_db, pid)

    @api.get("/report")
    async def report(response: Response, seconds: float = 0.1) -> dict[str, Any]:
        try:
            async with reports.slot(), tracker.track("report"), pool.connection() as conn:
                await conn.execute("SELECT pg_sleep(%s)", (min(seconds, 30.0),))
        except BulkheadFullError as err:
            response.status_code = 503
            return {"error": str(err)}
        return {"slept": seconds}

    @api.post("/orders", status_code=202)
    async def place_order(response: Response, priority: int = 5) -> dict[str, Any]:
        with tracer.trace("PlaceOrder", priority=priority) as trace:
            with trace.phase("check_degradation"):
                if not degradation.enabled("orders"):
                    raise HTTPException(503, "orders are paused")
            try:
                with trace.phase("enqueue"):
                    await orders.put({"priority": priority}, priority=priority)
            except QueueFullError as err:
                response.status_code = 503
                response.headers["Retry-After"] = "1"
                return {"error": str(err)}
        return {"queued": orders.size}

    async def charge(order_id: int) -> dict[str, Any]:
        reply = await gateway.post("/charges", json={"order": order_id})
        reply.raise_for_status()
        return dict(reply.json())

    @api.post("/pay/{order_id}")
    async def pay(order_id: int, response: Response) -> dict[str, Any]:
        try:
            return await payments.call_async(charge, order_id)
        except CircuitOpenError as err:
            response.status_code = 503
            response.headers["Retry-After"] = str(int(err.retry_after or 1) + 1)
            return {"error": str(err)}
        except (httpx.HTTPError, OSError) as err:
            response.status_code = 502
            return {"error": f"payment service failed: {type(err).__name__}"}

    health = Health(service_id="shop", timeout=3.0, cache_seconds=1.0)
    health.add("postgres:responseTime", postgres_check(dsn), component_type="datastore")
    health.add("redis:responseTime", redis_check(redis_url), component_type="datastore")
    health.add("disk:utilization", disk_check("/"), component_type="system")

    diagnostics = Diagnostics(service="shop")
    diagnostics.add_breakers(breakers)
    diagnostics.add_queue(orders)
    diagnostics.add_retry(payments_retry)
    diagnostics.add_latency(tracker)
    diagnostics.set_degradation(degradation)
    diagnostics.add_pool("db", lambda: _pool_stats(pool))
    diagnostics.add_pool("reports", reports.metrics)  # a Bulkhead has the pool shape
    diagnostics.register("traces", tracer.metrics)
    diagnostics.add_rate_limiter(product_limiter)

    return ObserveApp(health=health, diagnostics=diagnostics, admin_token=admin_token,
                      fallback=api)


def _pool_stats(pool: AsyncConnectionPool) -> dict[str, Any]:
    stats = pool.get_stats()
    size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
    return {"in_use": size - available, "max": pool.max_size,
            "waiting": stats.get("requests_waiting", 0), "size": size}


def from_env() -> ObserveApp:
    """The app configured from SHOP_* environment variables (for `uvicorn --factory`)."""
    return create_app(dsn=os.environ["SHOP_DSN"],
                      redis_url=os.environ.get("SHOP_REDIS", "redis://127.0.0.1:6379/0"),
                      payments_url=os.environ.get("SHOP_PAYMENTS", "http://127.0.0.1:8081"),
                      admin_token=os.environ.get("SHOP_ADMIN_TOKEN"))
