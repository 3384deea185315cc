"""What a service shows about itself: latency, traces, health and diagnostics.

    from stackmedic.observe import Diagnostics, Health, ObserveApp, track

    @track("checkout")
    async def checkout(cart): ...

    app = ObserveApp(health=health, diagnostics=diagnostics, fallback=fastapi_app)

Everything is plain Python and bare ASGI; FastAPI, Starlette or any ASGI server can
host it, and the doctor's `app` component kind reads it.
"""

from stackmedic.observe._asgi import ObserveApp
from stackmedic.observe._diagnostics import Diagnostics, MetricsSource
from stackmedic.observe._health import (
    CheckResult,
    Health,
    HealthCheck,
    disk_check,
    memory_check,
    postgres_check,
    redis_check,
)
from stackmedic.observe._latency import LatencyTracker, default_tracker, track
from stackmedic.observe._prometheus import exposition
from stackmedic.observe._sketch import LogSketch
from stackmedic.observe._tracer import Trace, Tracer

__all__ = [
    "CheckResult",
    "Diagnostics",
    "Health",
    "HealthCheck",
    "LatencyTracker",
    "LogSketch",
    "MetricsSource",
    "ObserveApp",
    "Trace",
    "Tracer",
    "default_tracker",
    "disk_check",
    "exposition",
    "memory_check",
    "postgres_check",
    "redis_check",
    "track",
]
