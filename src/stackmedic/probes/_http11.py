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
import re
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from stackmedic.probes._net import Failure, classify, resolve

__all__ = ["FetchError", "Pool", "Response"]

_HEAD_LIMIT = 64 * 1024  # status line + headers; more is a broken or hostile server
_IDLE_PER_ORIGIN = 64  # as many as the probes keep in flight (see _fetch)
_MAX_INTERIM = 16  # 1xx responses skipped before the final one; more is a broken server
_MAX_ADDRESSES = 4  # addresses of one name tried in turn when connecting is refused
# Characters kept as they are in the request target: the reserved set and `%`, so an
# already-escaped URL is sent unchanged while spaces and non-ASCII are escaped.
_TARGET_SAFE = "!$&'()*+,;=:@/%?~"
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


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
        try:
            parts = urlsplit(url)
            port = parts.port  # ValueError for a port that is not a number in range
            host = _ascii_host(parts.hostname or "")
        except (ValueError, UnicodeError) as err:
            raise FetchError("error", "request", f"unsupported URL {url!r}: {err}") from None
        if parts.scheme not in ("http", "https") or not host:
            raise FetchError("error", "request", f"unsupported URL {url!r}")
        tls = parts.scheme == "https"
        key = (parts.scheme, host, port or (443 if tls else 80))
        target = quote(parts.path or "/", safe=_TARGET_SAFE) + (
            f"?{quote(parts.query, safe=_TARGET_SAFE)}" if parts.query else "")
        host_header = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
        # Configured headers replace the defaults (a `Host:` to test a virtual host on an
        # address): sending both would be a duplicate Host, which servers answer with 400.
        given = {k.lower() for k in headers or {}}
        defaults = {"Host": host_header, "User-Agent": self.user_agent, "Accept": "*/*"}
        lines = [f"GET {target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in defaults.items() if k.lower() not in given]
        # CR/LF in a configured name or value would split the request: fold them to spaces.
        lines += [f"{_fold(k)}: {_fold(v)}" for k, v in (headers or {}).items()]
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
        """Connect to the first address of the name that accepts: `localhost` may
        resolve to ::1 first while the service listens on 127.0.0.1 only."""
        _scheme, host, port = key
        addresses = (await resolve(host, port, 3600.0))[:_MAX_ADDRESSES]  # caller's timeout
        for index, address in enumerate(addresses):
            try:
                reader, writer = await asyncio.open_connection(
                    address, port, ssl=self.ssl_context if tls else None,
                    server_hostname=host if tls else None, limit=_HEAD_LIMIT)
                break
            except ssl.SSLError:
                raise  # the service answered: another address would not change that
            except OSError:
                if index == len(addresses) - 1:
                    raise
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
            for _ in range(_MAX_INTERIM):
                version, status, reason, headers = await _read_head(conn.reader)
                if not 100 <= status < 200 or status == 101:
                    break  # 100 Continue, 103 Early Hints...: the real answer follows
            else:
                raise ValueError(f"more than {_MAX_INTERIM} interim (1xx) responses")
            body, complete = await _read_body(conn.reader, headers, status, max_bytes)
        except BaseException:
            conn.discard()
            raise
        if complete and _keep_alive(version, status, headers):
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


def _ascii_host(host: str) -> str:
    """The host as sent on the wire: IDNA for an internationalized name."""
    return host if host.isascii() else host.encode("idna").decode("ascii")


def _keep_alive(version: str, status: int, headers: dict[str, str]) -> bool:
    """Whether the connection may carry another request (RFC 9112 9.3)."""
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if status == 101 or "close" in tokens:
        return False
    return version != "HTTP/1.0" or "keep-alive" in tokens


async def _line(reader: asyncio.StreamReader) -> bytes:
    """One line ending in LF (CRLF or a bare LF, as curl and Go accept), capped at the
    stream limit; IncompleteReadError when the peer closes in the middle of it."""
    try:
        line = await reader.readline()
    except ValueError:  # readline's form of LimitOverrunError
        raise ValueError(f"line longer than {_HEAD_LIMIT} bytes") from None
    if not line.endswith(b"\n"):
        raise asyncio.IncompleteReadError(line, None)
    return line


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, int, str, dict[str, str]]:
    """(version, status, reason, lower-cased headers); ValueError for what is not
    HTTP/1.x or a head over _HEAD_LIMIT bytes."""
    status_line = (await _line(reader)).decode("latin-1").rstrip("\r\n")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not (len(code) == 3 and code.isascii()
                                                 and code.isdigit()):
        raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    size = len(status_line)
    while (line := (await _line(reader)).decode("latin-1").rstrip("\r\n")):
        size += len(line)
        if size > _HEAD_LIMIT:
            raise ValueError(f"response head larger than {_HEAD_LIMIT} bytes")
        name, sep, value = line.partition(":")
        if sep:
            name = name.strip().lower()
            headers[name] = (headers[name] + ", " if name in headers else "") + value.strip()
    return version, int(code), reason.strip(), headers


def _content_length(value: str) -> int:
    """Content-Length, tolerating the same value repeated (`10, 10`, RFC 9110 8.6)."""
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not all(v.isascii() and v.isdigit() for v in values):
        raise ValueError(f"invalid Content-Length {value[:40]!r}")
    return int(values.pop())


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], status: int,
                     max_bytes: int) -> tuple[bytes, bool]:
    """(body up to max_bytes + 1, whether the message was read to its end and the
    connection is positioned at the next one). Never reads more than max_bytes + 1
    bytes of body, whatever sizes the server announces."""
    if status < 200 or status in (204, 304):
        return b"", status != 101
    cap = max_bytes + 1
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            token = (await _line(reader)).split(b";", 1)[0].strip()
            if not _HEX.fullmatch(token):
                raise ValueError(f"invalid chunk size {token[:20]!r}")
            size = int(token, 16)
            if size == 0:
                trailers = 0
                while (line := await _line(reader)) not in (b"\r\n", b"\n"):
                    trailers += len(line)
                    if trailers > _HEAD_LIMIT:
                        raise ValueError(f"trailers larger than {_HEAD_LIMIT} bytes")
                return bytes(body), True
            if size > cap - len(body):  # announced more than we keep: stop at the cap
                body += await reader.readexactly(cap - len(body))
                return bytes(body), False
            body += await reader.readexactly(size)
            if (await _line(reader)).strip():
                raise ValueError("chunk data longer than its announced size")
    length = headers.get("content-length")
    if length is not None:
        size = _content_length(length)
        if size > max_bytes:
            return await reader.readexactly(cap), False
        return await reader.readexactly(size), True
    body = bytearray()
    while len(body) < cap:
        chunk = await reader.read(min(65536, cap - len(body)))
        if not chunk:
            break
        body += chunk
    return bytes(body), False
