"""Autodiscovery: ports that answer become components of their kind; logs attach to host."""

import socket
from collections.abc import Callable
from pathlib import Path

from stackmedic.discovery import discover_stack, discovery_spec
from tests.fixtures.ports import free_port
from tests.fixtures.redis import RedisServer


def test_answering_ports_become_components(redis_factory: Callable[..., RedisServer],
                                           tmp_path: Path) -> None:
    """A live Redis and a listening HTTP-ish port are found; a closed port is not; the
    host component carries ./logs/*.log."""
    redis = redis_factory()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    http_port = listener.getsockname()[1]
    closed = free_port()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "app.log").write_text("hello\n")
    try:
        spec = discovery_spec(logs_dir=tmp_path / "logs",
                              ports={redis.port: "redis", http_port: "http", closed: "postgres"})
    finally:
        listener.close()
    components = spec["components"]
    assert components["host"] == {"kind": "host", "logs": [str(tmp_path / "logs" / "app.log")]}
    assert components["redis"] == {"kind": "redis", "url": f"redis://127.0.0.1:{redis.port}/0"}
    assert components["http"] == {"kind": "http", "url": f"http://127.0.0.1:{http_port}/"}
    assert "postgres" not in components


def test_discovered_stack_validates_and_names_duplicate_kinds(tmp_path: Path) -> None:
    """Two answering ports of one kind get distinct names, and the stack validates."""
    a, b = socket.socket(), socket.socket()
    for sock in (a, b):
        sock.bind(("127.0.0.1", 0))
        sock.listen()
    try:
        ports = {a.getsockname()[1]: "http", b.getsockname()[1]: "http"}
        stack = discover_stack(logs_dir=tmp_path, ports=ports)
    finally:
        a.close()
        b.close()
    assert sorted(stack.components) == sorted(["host", *(f"http-{p}" for p in ports)])
