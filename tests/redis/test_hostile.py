"""A server that speaks RESP but answers nonsense: the probe reports, never crashes.

Redis-compatible proxies and forks answer some commands differently; a reply the
collector cannot read must cost that one fact, not the whole run (`check.failed`).
This is hostile input, not a stand-in for Redis: real-server behaviour is tested
against real servers everywhere else.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stackmedic.findings import Severity
from tests.redis.conftest import diagnose, only

INFO = ("# Server\r\nredis_version:7.2.0\r\nuptime_in_seconds:abc\r\n"
        "connected_clients:many\r\nblocked_clients:2\r\nmaxclients:0\r\n"
        "used_memory:-5\r\nmaxmemory:1e400\r\nmaxmemory_policy:volatile-lru\r\n"
        "mem_fragmentation_ratio:nan\r\nrole:slave\r\nmaster_link_status:up\r\n"
        "slave0:garbage\r\ndb0:keys=x,expires=y\r\nerrorstat_OOM:count=z\r\n"
        "this line has no colon\r\n")


def _encode(value: Any) -> bytes:
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(_encode(v) for v in value)
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, Exception):
        return f"-{value}\r\n".encode()
    if value is None:
        return b"$-1\r\n"
    raw = value.encode()
    return b"$%d\r\n%b\r\n" % (len(raw), raw)


# Command (upper-cased first one or two words) → reply; anything else gets +OK.
REPLIES: dict[str, Any] = {
    "PING": "PONG",
    "INFO": INFO,
    "CONFIG GET": ["maxmemory", "0", "dir"],  # odd length
    "SLOWLOG GET": [["x", "y", "z", "not-a-list"], 5, [1, 2, 3, ["GET", "k"], 7, None],
                    [None, None, None, [None, 5]]],
    "LATENCY LATEST": [["command", "not-a-time", "x", "y"], "row", [1, 2]],
    "CLIENT LIST": 42,
    "SCAN": ["not-a-cursor", 7],
    "TYPE": 5,
    "MEMORY USAGE": "huge",
}


def _requests(conn: socket.socket) -> Iterator[list[str]]:
    """The commands a client sends on `conn`, until it hangs up."""
    buffer = b""
    while True:
        args, buffer = _parse(buffer)
        if args is not None:
            yield args
            continue
        try:
            data = conn.recv(65536)
        except OSError:
            return
        if not data:
            return
        buffer += data


def _serve(conn: socket.socket) -> None:
    with conn:
        for args in _requests(conn):
            words = [a.upper() for a in args[:2]]
            reply = REPLIES.get(" ".join(words), REPLIES.get(words[0], "OK"))
            out = b"+PONG\r\n" if words == ["PING"] else _encode(reply)
            conn.sendall(out)


def _parse(buffer: bytes) -> tuple[list[str] | None, bytes]:
    """One RESP array of bulk strings off the front of `buffer`, if complete."""
    if not buffer.startswith(b"*") or b"\r\n" not in buffer:
        return None, buffer
    head, rest = buffer.split(b"\r\n", 1)
    args = []
    for _ in range(int(head[1:])):
        if b"\r\n" not in rest:
            return None, buffer
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line[1:])
        if len(rest) < size + 2:
            return None, buffer
        args.append(rest[:size].decode("latin-1"))
        rest = rest[size + 2:]
    return args, rest


@pytest.fixture
def hostile_url() -> Iterator[str]:
    """A RESP server on 127.0.0.1 answering nonsense, stopped at teardown."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=_serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join(5)
    listener.close()


def test_nonsense_replies_cost_facts_not_the_run(hostile_url: str) -> None:
    """Unreadable LATENCY, SLOWLOG, CLIENT LIST, SCAN and INFO values give findings, and
    no check fails."""
    findings = diagnose(hostile_url)
    failed = [f.summary for f in findings if f.symptom == "stackmedic.check.failed"]
    assert failed == []
    assert only(findings, "cache.down").severity is Severity.OK
    evictions = only(findings, "cache.evictions")  # INFO was read but lacks the counter
    assert evictions.severity is Severity.UNKNOWN and "lacks" in evictions.summary
    assert "persistence is off" not in only(findings, "cache.persistence.failing").summary


@pytest.fixture(params=["tcp", "unix", "tls"])
def flooding(request: pytest.FixtureRequest, tmp_path: Path,
             ) -> Iterator[tuple[str, dict[str, Any], list[int]]]:
    """A server that answers PING, then answers INFO with a 1 GiB bulk string that it
    streams until the client hangs up, over TCP, a unix socket or TLS: its URL, the
    component fields it needs and a list holding the bytes it managed to send."""
    fields: dict[str, Any] = {}
    if request.param == "unix":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(tmp_path / "redis.sock"))
        url = f"unix://{tmp_path / 'redis.sock'}?db=0"
    else:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        scheme = "rediss" if request.param == "tls" else "redis"
        url = f"{scheme}://127.0.0.1:{listener.getsockname()[1]}/0"
    wrap = _tls_server(tmp_path, fields) if request.param == "tls" else (lambda conn: conn)
    listener.listen(4)
    sent = [0]

    def serve(conn: socket.socket) -> None:
        chunk = b"x" * (1 << 20)
        try:
            conn = wrap(conn)
        except OSError:
            return
        with conn:
            for args in _requests(conn):
                if args[0].upper() != "INFO":
                    conn.sendall(b"+PONG\r\n" if args[0].upper() == "PING" else b"+OK\r\n")
                    continue
                try:
                    conn.sendall(b"$1073741824\r\n")
                    while sent[0] < 1 << 30:
                        conn.sendall(chunk)
                        sent[0] += len(chunk)
                except OSError:
                    return  # the client hung up, as it should

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield url, fields, sent
    listener.close()


def _tls_server(tmp_path: Path, fields: dict[str, Any]) -> Callable[[socket.socket],
                                                                    socket.socket]:
    """Server-side TLS for 127.0.0.1 from a throwaway CA, whose file goes into `fields`."""
    import ssl

    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    fields["tls_ca_file"] = str(tmp_path / "ca.pem")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return lambda conn: context.wrap_socket(conn, server_side=True)


def test_a_flood_of_a_reply_is_cut_off_at_the_cap(
        flooding: tuple[str, dict[str, Any], list[int]]) -> None:
    """A server streaming a 1 GiB INFO reply, over TCP, a unix socket or TLS, is hung up
    on once 64 MiB are read: the check says it could not tell (unknown), names the cap,
    and keeps going."""
    from stackmedic.probes.redis._client import MAX_REPLY_BYTES

    url, fields, sent = flooding
    down = only(diagnose(url, **fields), "cache.down")
    assert down.severity is Severity.UNKNOWN
    assert "more than 64 MiB" in down.summary and "not a Redis server" in (down.cause or "")
    # What was sent (in whole 1 MiB chunks) is what we read plus what the two sockets'
    # kernel buffers held.
    assert MAX_REPLY_BYTES <= sent[0] < MAX_REPLY_BYTES + 32 * (1 << 20)
