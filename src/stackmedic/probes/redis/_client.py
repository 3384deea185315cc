"""The only way stackmedic talks to Redis: a read-only allowlist over one connection.

`SafeClient.call("CONFIG", "GET", "maxmemory")` reaches the server only when the
command (and, for container commands, its subcommand) is on `ALLOWED`; anything
else raises `ForbiddenCommandError` before a byte is sent. `SCAN` must carry a
`COUNT` of at most 10,000, so a sampling loop can never turn into an unbounded
`KEYS *`; `MEMORY USAGE … SAMPLES 0` (every element) and `CONFIG GET` patterns
(which would fetch `requirepass`) are refused too.

`connect()` opens the connection with timeouts taken from the collector's deadline
and no driver retries (a retry would multiply the time a dead server costs). Its
sockets count what they read after each request and give up past `MAX_REPLY_BYTES`
(`ReplyTooLargeError`): a server announcing a gigabyte reply, or streaming one, costs
64 MiB of memory at most, not whatever it can send before the deadline.
`describe_error()` turns driver exceptions into facts (`kind`, `message`) at this
boundary, so nothing above this module catches redis-py errors.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from stackmedic import redact
from stackmedic.errors import StackmedicError

if TYPE_CHECKING:
    import redis
    from stackmedic.probes.redis import RedisComponent

__all__ = ["ALLOWED", "CLIENT_NAME", "MAX_REPLY_BYTES", "ForbiddenCommandError",
           "ReplyTooLargeError", "SafeClient", "check_allowed", "connect", "describe_error",
           "unsolicited_reply"]

# (command,) or (command, subcommand): read-only commands a diagnosis needs.
ALLOWED: frozenset[tuple[str, ...]] = frozenset({
    ("PING",), ("INFO",), ("DBSIZE",), ("SCAN",), ("TYPE",),
    ("CONFIG", "GET"), ("SLOWLOG", "GET"), ("SLOWLOG", "LEN"),
    ("LATENCY", "LATEST"), ("LATENCY", "DOCTOR"),
    ("MEMORY", "USAGE"), ("MEMORY", "STATS"), ("MEMORY", "DOCTOR"),
    ("OBJECT", "ENCODING"), ("CLIENT", "LIST"),
})
_CONTAINERS = frozenset(name for name, *sub in ALLOWED if sub)
MAX_SCAN_COUNT = 10_000  # per SCAN call: the server blocks while it walks this many slots
CLIENT_NAME = "stackmedic"  # our connection's name in CLIENT LIST and the slow log
# Bytes read for one request (one command, or one batch) before we hang up. The
# largest replies we ask for (CLIENT LIST of 10,000 clients, a SCAN page of 10,000
# long names) are a few MB.
MAX_REPLY_BYTES = 64 * 1024 * 1024


class ForbiddenCommandError(StackmedicError):
    """A command outside the read-only allowlist was asked for; it was not sent."""

    def __init__(self, command: str) -> None:
        self.command = command  # name (and subcommand) only: arguments may be secrets
        super().__init__(f"refusing to send {self.command!r} to Redis: not on the read-only "
                         "allowlist")


def check_allowed(args: Sequence[Any]) -> None:
    """Raise ForbiddenCommandError unless `args` is an allowlisted command."""
    if not args:
        raise ForbiddenCommandError("<empty>")
    name = _word(args[0])
    key = (name, _word(args[1])) if name in _CONTAINERS and len(args) > 1 else (name,)
    if key not in ALLOWED:
        raise ForbiddenCommandError(" ".join(key))
    words = [_word(a) for a in args]
    if name == "SCAN" and not _option_at_most(words, "COUNT", MAX_SCAN_COUNT):
        raise ForbiddenCommandError(f"SCAN without a COUNT of at most {MAX_SCAN_COUNT}")
    # SAMPLES 0 makes MEMORY USAGE walk every element of a big key: O(N), blocking.
    if key == ("MEMORY", "USAGE") and "SAMPLES" in words \
            and not _option_at_most(words, "SAMPLES", MAX_SCAN_COUNT, minimum=1):
        raise ForbiddenCommandError("MEMORY USAGE with SAMPLES 0 (every element)")
    # Settings by name only: a pattern would also fetch requirepass and masterauth.
    if key == ("CONFIG", "GET") and any(c in word for word in words[2:] for c in "*?["):
        raise ForbiddenCommandError("CONFIG GET with a pattern")


def _option_at_most(words: list[str], option: str, limit: int, minimum: int = 0) -> bool:
    """True when `option N` is present with minimum <= N <= limit."""
    try:
        value = int(words[words.index(option) + 1])
    except (ValueError, IndexError):
        return False
    return minimum <= value <= limit


def _word(arg: Any) -> str:
    return (arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)).upper()


class SafeClient:
    """A redis-py client that only sends allowlisted commands."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def call(self, *args: Any) -> Any:
        """Run one allowlisted command; its reply, parsed by redis-py."""
        check_allowed(args)
        return self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    def batch(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Run allowlisted commands in one round trip (no MULTI); a command that fails
        comes back as its error in the list instead of raising.

        Encodes RESP itself (hiredis's encoder when installed) and reads replies on the
        client's one connection, because redis-py's pipeline machinery costs ~20 µs per
        command in Python. Measured on 100k keys (TYPE + MEMORY USAGE each, hiredis,
        same server, 3 alternating rounds on a loaded 2-core machine): 2.8-3.8 s this
        way, 6.4-7.8 s through `pipeline()`, 1.0-2.0 s for `redis-cli --memkeys`
        (bench/bench_redis.py has the 1M-key figures).
        """
        import redis.exceptions as rex

        for args in commands:
            check_allowed(args)
        pool = self._client.connection_pool
        conn = pool.get_connection()
        try:
            pack = _packer()
            packed = [b"".join(pack(args) for args in commands)]  # a list of chunks
            conn.send_packed_command(packed)  # type: ignore[no-untyped-call]
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except rex.ResponseError as err:
                    replies.append(err)
            return replies
        except BaseException:
            # Unread replies would be taken for the answers to the next command.
            conn.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            pool.release(conn)

    def close(self) -> None:
        self._client.close()


class ReplyTooLargeError(Exception):
    """The server sent more than MAX_REPLY_BYTES for one request."""


class _CountingSocket:
    """A socket that refuses to read more than `limit` bytes per request.

    The count restarts at each `sendall` (redis-py sends each request with it) and
    covers what redis-py's parsers read with `recv`/`recv_into`; everything else is the
    wrapped socket's (TCP, TLS or unix), so poll() and shutdown work as before.
    """

    def __init__(self, sock: socket.socket, limit: int) -> None:
        self._sock = sock
        self._limit = limit
        self._read = 0

    def sendall(self, data: Any, *flags: int) -> None:
        self._read = 0
        self._sock.sendall(data, *flags)

    def recv(self, size: int, *flags: int) -> bytes:
        data = self._sock.recv(size, *flags)
        if not flags:  # MSG_PEEK leaves the bytes to be read (and counted) later
            self._count(len(data))
        return data

    def recv_into(self, buffer: Any, *args: int) -> int:
        n = self._sock.recv_into(buffer, *args)
        self._count(n)
        return n

    def _count(self, n: int) -> None:
        self._read += n
        if self._read > self._limit:
            raise ReplyTooLargeError(
                f"the server sent more than {self._limit // (1024 * 1024)} MiB for one "
                "request; stopped reading")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _CappedReplies:
    """Mixed into redis-py's connection class: its socket is a `_CountingSocket`."""

    def _connect(self) -> Any:
        return _CountingSocket(super()._connect(), MAX_REPLY_BYTES)  # type: ignore[misc]


def _packer() -> Callable[[Sequence[Any]], bytes]:
    """hiredis's C encoder when installed (3x faster than `_pack`), else `_pack`."""
    try:
        from hiredis import pack_command
    except ImportError:
        return _pack
    return lambda args: bytes(pack_command(tuple(args)))


def _pack(args: Sequence[Any]) -> bytes:
    """One command in RESP: `*<n>` then `$<len>` + bytes for each argument."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(out)


def connect(component: RedisComponent, timeout: float) -> SafeClient:
    """A client for `component` whose connect and reads each give up after `timeout`."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    import redis

    options: dict[str, Any] = {
        "socket_timeout": timeout, "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0), "protocol": 2,
        "driver_info": None,  # no CLIENT SETINFO: only allowlisted commands after AUTH
        # CLIENT SETNAME on connect: operators see who we are in CLIENT LIST, and its
        # reply drains TLS 1.3 session tickets that redis-py would otherwise take for
        # unread data ("Connection not ready") on rediss:// servers.
        "client_name": CLIENT_NAME,
    }
    if component.username is not None:
        options["username"] = component.username
    if component.password is not None:
        options["password"] = component.password
    if component.tls_ca_file is not None:
        options["ssl_ca_certs"] = component.tls_ca_file
    client = redis.Redis.from_url(component.url, **options)
    pool = client.connection_pool
    base = pool.connection_class  # TCP, TLS or unix socket, from the URL
    pool.connection_class = type(f"Capped{base.__name__}", (_CappedReplies, base), {})
    return SafeClient(client)


def describe_error(err: BaseException) -> dict[str, str]:
    """A driver error as facts: `kind` (what a rule branches on) and a redacted message."""
    import redis.exceptions as rex

    message = redact.redact_text(str(err))[:300]
    text = message.upper()
    if isinstance(err, rex.NoPermissionError) or "NOPERM" in text:
        kind = "noperm"
    elif isinstance(err, rex.AuthenticationError | rex.AuthenticationWrongNumberOfArgsError) \
            or "NOAUTH" in text or "WRONGPASS" in text:
        kind = "auth"
    elif isinstance(err, rex.BusyLoadingError) or text.startswith("LOADING"):
        kind = "loading"
    elif isinstance(err, ReplyTooLargeError):
        kind = "oversized"
    elif "MAX NUMBER OF CLIENTS" in text:
        kind = "maxclients"
    elif "SSL" in text or "CERTIFICATE" in text:
        kind = "tls"
    elif isinstance(err, rex.TimeoutError) or "TIMED OUT" in text:
        kind = "timeout"
    elif "REFUSED" in text or "NO SUCH FILE" in text:
        kind = "refused"
    elif isinstance(err, rex.ConnectionError | OSError):
        kind = "connection"
    else:
        kind = "error"
    return {"kind": kind, "message": message}


def unsolicited_reply(url: str, timeout: float) -> str | None:
    """What the server says on a fresh connection before we send anything.

    A server at maxclients writes `-ERR max number of clients reached` and closes; if
    our PING crosses that close, the kernel may answer with a reset that discards the
    error, and the driver only sees "connection reset". Reading first recovers it.
    Nothing is sent, so the allowlist is not involved; TLS servers are skipped.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(parts.path)
        elif parts.scheme == "redis":
            sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379),
                                            timeout=timeout)
        else:
            return None
        with sock:
            data = sock.recv(256)
    except OSError:
        return None
    return data.decode("utf-8", "replace").strip().lstrip("-") or None
