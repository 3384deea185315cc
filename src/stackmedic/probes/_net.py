"""Bounded name resolution and the classification of network errors into facts.

`resolve` runs getaddrinfo in a daemon thread so a wedged resolver costs at most the
caller's timeout and can never hold the process open (asyncio's default executor
would be joined at shutdown). `classify` turns the exceptions of a connection attempt
into the small vocabulary the rules speak: refused, timeout, dns, tls, reset, error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import threading
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from stackmedic.checks import CollectContext

__all__ = ["Failure", "ResolveError", "budget", "classify", "is_ip", "resolve"]

Failure = Literal["refused", "timeout", "dns", "tls", "reset", "error"]


class ResolveError(OSError):
    """A host name did not resolve (carries the resolver's message)."""


def budget(ctx: CollectContext) -> float:
    """Seconds one network step may take: what is left of the collector's time, minus
    room to hand back the facts before the runner's deadline turns them into `unknown`."""
    left = ctx.remaining()
    return max(0.01, left - max(0.1, 0.1 * left))


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolve(host: str, port: int, timeout: float) -> list[str]:
    """The addresses of `host` (IP literals as they are), within `timeout` seconds.

    Raises ResolveError for a name that does not resolve and TimeoutError when the
    resolver does not answer in time.
    """
    if is_ip(host):
        return [host]
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[str]] = loop.create_future()

    def settle(result: Any, ok: bool) -> None:
        if not future.done():
            future.set_result(result) if ok else future.set_exception(result)

    def target() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome: tuple[Any, bool] = (list(dict.fromkeys(str(i[4][0]) for i in infos)), True)
        except (OSError, UnicodeError) as err:
            outcome = (ResolveError(str(err)), False)
        with contextlib.suppress(RuntimeError):  # loop gone: nobody waits for the answer
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=target, daemon=True, name="stackmedic-resolve").start()
    return await asyncio.wait_for(future, timeout)


def classify(err: BaseException) -> tuple[Failure, str]:
    """(failure kind, one-line message) for an exception of a connect/read attempt."""
    if isinstance(err, ResolveError | socket.gaierror):
        return "dns", f"name does not resolve: {err}"
    if isinstance(err, TimeoutError):
        return "timeout", "timed out"
    if isinstance(err, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(err, ssl.SSLCertVerificationError):
        return "tls", f"certificate verification failed: {err.verify_message}"
    if isinstance(err, ssl.SSLError):
        return "tls", f"TLS handshake failed: {err.reason or err}"
    if isinstance(err, ConnectionResetError | BrokenPipeError | asyncio.IncompleteReadError):
        return "reset", "connection closed by the server"
    return "error", f"{type(err).__name__}: {err}"
