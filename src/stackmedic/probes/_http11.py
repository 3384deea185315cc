"""A lean asyncio HTTP/1.1 client for the doctor's plain GETs.

Why not httpx here: measured on this 2-core machine against a local asyncio server,
httpx 0.28's AsyncClient made 3,000 GETs in 4.5 s one at a time and in 8-22 s with
10-100 in flight (its pool bookkeeping dominates); this client makes the same 3,000
in 1.0 s one at a time and 0.3 s with 10 in flight, and the whole doctor over 1,000
components x 3 samples takes about 1 s (bench/bench_doctor_http.py, bench/RESULTS.md)
against a budget of 3 s. The probes need only GET with a few headers, keep-alive,
Content-Length / chunked / read-to-close bodies capped at `max_bytes`, and the peer
certificate; this does just that. Redirects are followed by the caller so each hop
can be recorded.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from stackmedic.probes._net import Failure, classify, resolve

__all__ = ["FetchError", "Pool", "Response"]

_HEAD_LIMIT = 64 * 1024  # status line + headers; more is a broken or hostile server
_IDLE_PER_ORIGIN = 64  # as many as the probes keep in flight (see _fetch)


@dataclass
class Response:
    """One HTTP response: status, lower-cased headers, the (capped) body."""

    url: str
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    truncated: bool
    elapsed: float
    peer_cert: bytes | None = None  # DER of the server certificate, when TLS


@dataclass
class FetchError(Exception):
    """A request that got no usable response; `kind` says why, `phase` where."""

    kind: Failure
    phase: str
    message: str
    elapsed: float = 0.0

    def __str__(self) -> str:
        return f"{self.message} ({self.phase})"


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer_cert: bytes | None = None

    def discard(self) -> None:
        """Close now, without a TLS close_notify round trip: a graceful TLS shutdown
        would wait on the peer and outlive the run's event loop."""
        self.writer.transport.abort()


@dataclass
class Pool:
    """Keep-alive connections per origin, for one TLS setting."""

    ssl_context: ssl.SSLContext
    user_agent: str = "stackmedic"
    _idle: dict[tuple[str, str, int], list[_Conn]] = field(default_factory=dict)

    async def get(self, url: str, *, timeout: float, max_bytes: int,
                  headers: dict[str, str] | None = None) -> Response:
        """GET `url` within `timeout` seconds; raises FetchError when there is no answer.

        Credentials in the URL (`https://user:pass@host/`) are sent as Basic auth.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError("error", "request", f"unsupported URL {url!r}")
        tls = parts.scheme == "https"
        key = (parts.scheme, parts.hostname, parts.port or (443 if tls else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = parts.netloc.rsplit("@", 1)[-1]
        lines = [f"GET {target} HTTP/1.1", f"Host: {host_header}",
                 f"User-Agent: {self.user_agent}", "Accept: */*"]
        # CR/LF in a configured value would split the request: fold them to spaces.
        lines += [f"{k}: {_fold(v)}" for k, v in (headers or {}).items()]
        if parts.username is not None and not any(k.lower() == "authorization"
                                                  for k in headers or {}):
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            lines.append("Authorization: Basic " + base64.b64encode(pair.encode()).decode())
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        start = time.monotonic()
        phase = "connect"
        try:
            async with asyncio.timeout(timeout):
                conn = self._take(key)
                if conn is not None:
                    phase = "response"
                    try:
                        return await self._exchange(conn, key, url, request, max_bytes, start)
                    except (ConnectionError, asyncio.IncompleteReadError):
                        pass  # a stale keep-alive connection (now closed): retry once, fresh
                        start, phase = time.monotonic(), "connect"
                conn = await self._connect(key, tls)
                phase = "response"
                return await self._exchange(conn, key, url, request, max_bytes, start)
        except FetchError:
            raise
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as err:
            kind, message = classify(err)
            if isinstance(err, ValueError) and not isinstance(err, OSError):  # SSLError is both
                kind, message = "error", f"malformed response: {err}"
            raise FetchError(kind, phase, message, time.monotonic() - start) from None

    def _take(self, key: tuple[str, str, int]) -> _Conn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn
            conn.discard()
        return None

    async def _connect(self, key: tuple[str, str, int], tls: bool) -> _Conn:
        _scheme, host, port = key
        address = (await resolve(host, port, 3600.0))[0]  # bounded by the caller's timeout
        reader, writer = await asyncio.open_connection(
            address, port, ssl=self.ssl_context if tls else None,
            server_hostname=host if tls else None, limit=_HEAD_LIMIT)
        cert = None
        if tls:
            ssl_object = writer.get_extra_info("ssl_object")
            cert = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        return _Conn(reader, writer, cert)

    async def _exchange(self, conn: _Conn, key: tuple[str, str, int], url: str,
                        request: bytes, max_bytes: int, start: float) -> Response:
        """Send the request and read the answer; the connection goes back to the pool
        only after a complete, reusable message, and is closed on anything else
        (errors and cancellation by the caller's timeout included)."""
        try:
            conn.writer.write(request)
            await conn.writer.drain()
            status, reason, headers = await _read_head(conn.reader)
            body, complete = await _read_body(conn.reader, headers, status, max_bytes)
        except BaseException:
            conn.discard()
            raise
        if complete and "close" not in headers.get("connection", "").lower():
            idle = self._idle.setdefault(key, [])
            idle.append(conn)
            while len(idle) > _IDLE_PER_ORIGIN:
                idle.pop(0).discard()
        else:
            conn.discard()
        return Response(url, status, reason, headers, body[:max_bytes], len(body) > max_bytes,
                        time.monotonic() - start, conn.peer_cert)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.discard()


def _fold(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, dict[str, str]]:
    """(status, reason, lower-cased headers); ValueError for what is not HTTP/1.x."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise ValueError(f"response head larger than {_HEAD_LIMIT} bytes") from None
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            name = name.strip().lower()
            headers[name] = (headers[name] + ", " if name in headers else "") + value.strip()
    return int(code), reason, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], status: int,
                     max_bytes: int) -> tuple[bytes, bool]:
    """(body up to max_bytes + 1, whether the message was read to its end)."""
    if status < 200 or status in (204, 304):
        return b"", True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while len(body) <= max_bytes:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return bytes(body), True
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        return bytes(body), False
    length = headers.get("content-length")
    if length is not None:
        size = int(length)
        if size > max_bytes:
            return await reader.readexactly(max_bytes + 1), False
        return await reader.readexactly(size), True
    body = bytearray()
    while len(body) <= max_bytes:
        chunk = await reader.read(65536)
        if not chunk:
            return bytes(body), False
        body += chunk
    return bytes(body), False
