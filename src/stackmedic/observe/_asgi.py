"""The HTTP face of a service's health and diagnostics, as a bare ASGI application.

    app = ObserveApp(health=health, diagnostics=diagnostics, fallback=fastapi_app)

serves, and hands every other request to `fallback` (so it wraps a FastAPI or
Starlette app like a middleware), or mounts under a prefix with `app.mount("/ops", app)`:

    GET  /health        application/health+json; 200 for pass/warn, 503 for fail
    GET  /diagnostics   the `Diagnostics.snapshot()` document
    GET  /metrics       Prometheus text exposition of the same (when `metrics=True`)
    POST /admin/breakers/{name}/reset               the runbooks' "reset the breaker"
    POST /admin/breakers/{name}/state  {"state": "forced_open" | "disabled" | ...}
    POST /admin/degradation            {"level": "degraded" | ...}

The admin routes exist only when `admin_token` is set and require
`Authorization: Bearer <admin_token>` (scheme in any case, RFC 7235); they are POST
only and read at most 4 KiB. No framework is needed: the ASGI protocol is three small
dicts.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

from stackmedic.observe._diagnostics import Diagnostics
from stackmedic.observe._health import Health

__all__ = ["ObserveApp"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

_MAX_BODY = 4096


class ObserveApp:
    """ASGI app serving /health, /diagnostics, /metrics and (opt-in) /admin routes."""

    def __init__(self, *, health: Health | None = None, diagnostics: Diagnostics | None = None,
                 metrics: bool = True, admin_token: str | None = None,
                 fallback: ASGIApp | None = None) -> None:
        self.health = health
        self.diagnostics = diagnostics
        self.metrics = metrics
        self._admin_token = admin_token
        self._fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = _route_path(scope)
            method = scope.get("method", "GET")
            handled = await self._route(path, method, scope, receive, send)
            if handled:
                return
        if self._fallback is not None:
            await self._fallback(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await _send_json(send, 404, {"error": "not found"})

    async def _route(self, path: str, method: str, scope: Scope, receive: Receive,
                     send: Send) -> bool:
        reads = method in ("GET", "HEAD")
        if path == "/health" and self.health is not None and reads:
            status, body = await self.health.run()
            await _send_json(send, 503 if status == "fail" else 200, body,
                             "application/health+json", head=method == "HEAD")
        elif path == "/diagnostics" and self.diagnostics is not None and reads:
            await _send_json(send, 200, self.diagnostics.snapshot(), head=method == "HEAD")
        elif path == "/metrics" and self.metrics and self.diagnostics is not None and reads:
            from stackmedic.observe._prometheus import exposition

            await _send(send, 200, exposition(self.diagnostics.snapshot()).encode(),
                        "text/plain; version=0.0.4; charset=utf-8")
        elif path.startswith("/admin/") and self._admin_token and self.diagnostics:
            await self._admin(path, method, scope, receive, send)
        else:
            return False
        return True

    async def _admin(self, path: str, method: str, scope: Scope, receive: Receive,
                     send: Send) -> None:
        if method != "POST":
            await _send_json(send, 405, {"error": "admin routes are POST only"})
            return
        supplied = _bearer_token(scope)
        assert self._admin_token is not None and self.diagnostics is not None
        if not hmac.compare_digest(supplied.encode(), self._admin_token.encode()):
            await _send_json(send, 401, {"error": "missing or wrong admin token"})
            return
        try:
            body = await _read_json(receive)
            status, result = _apply_admin(self.diagnostics, path.split("/")[2:], body)
        except ValueError as err:
            status, result = 400, {"error": str(err)}
        await _send_json(send, status, result)


def _apply_admin(diagnostics: Diagnostics, parts: list[str],
                 body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Carry out one admin action; (status code, response body)."""
    if parts[:1] == ["breakers"] and len(parts) == 3:
        name, action = parts[1], parts[2]
        registry = next((r for r in diagnostics.breaker_registries if name in r), None)
        if registry is None:
            return 404, {"error": f"no breaker named {name!r}"}
        if action == "reset":
            registry.reset(name)
        elif action == "state":
            try:
                registry.transition(name, str(body.get("state", "")))
            except KeyError:
                raise ValueError(f"unknown state {body.get('state')!r}") from None
        else:
            return 404, {"error": f"unknown breaker action {action!r}"}
        return 200, {"breaker": name, "state": registry[name].state.label}
    if parts == ["degradation"] and diagnostics.degradation is not None:
        try:
            diagnostics.degradation.set_level(str(body.get("level", "")))
        except KeyError:
            raise ValueError(f"unknown level {body.get('level')!r}") from None
        return 200, diagnostics.degradation.metrics()
    return 404, {"error": "unknown admin route"}


def _route_path(scope: Scope) -> str:
    """The path below the mount point.

    The ASGI spec puts the mount prefix in `root_path` and keeps it in `path` too, as
    recent Starlette and uvicorn do; older frameworks stripped it from `path`. Both work.
    """
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root):] or "/"
    return path


def _bearer_token(scope: Scope) -> str:
    """The token of an `Authorization: Bearer <token>` header; "" for any other scheme."""
    scheme, _, token = _header(scope, b"authorization").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


async def _read_json(receive: Receive) -> dict[str, Any]:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > _MAX_BODY:
            raise ValueError(f"request body over {_MAX_BODY} bytes")
        if not message.get("more_body"):
            break
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except json.JSONDecodeError as err:
        raise ValueError(f"body is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


async def _send_json(send: Send, status: int, body: Any,
                     content_type: str = "application/json", *, head: bool = False) -> None:
    payload = json.dumps(body, default=str).encode()
    await _send(send, status, payload, content_type, head=head)


async def _send(send: Send, status: int, payload: bytes, content_type: str, *,
                head: bool = False) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
    ]})
    await send({"type": "http.response.body", "body": b"" if head else payload})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
