"""Real local servers for network probe tests (127.0.0.1 only, free ports).

    with HttpServer({"/": Route(200, "hi"), "/slow": Route(delay=0.3)}) as server:
        server.url("/slow")
    with SilentServer() as port: ...      # accepts TCP connections, never answers
    with FullBacklogServer() as port: ... # listen(0) with its backlog filled: connects time out
    tls = TlsFiles.make(tmp_path, "localhost", not_after=...)  # trustme CA + leaf cert
    run_in_namespace(ns, {"svc": {"kind": "tcp", "host": "10.200.0.1", "port": "$PORT"}})
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["FullBacklogServer", "HttpServer", "RawServer", "Route", "SilentServer", "TlsFiles",
           "network_namespace", "run_in_namespace", "self_signed", "unfilled_remedies"]


def unfilled_remedies(findings: list[Any]) -> list[str]:
    """Remedy steps still holding a `<placeholder>`: evidence the runbook needs and the
    finding does not carry (the runbook filler writes `<key>` for a missing one)."""
    import re

    return [step for f in findings if f.remedy is not None for step in f.remedy.steps
            if re.search(r"<[a-z_]+>", step)]


@dataclass
class Route:
    """What a path answers: status, body (dict → JSON), headers, delay before answering,
    and optionally the Authorization value it requires (401 without it)."""

    status: int = 200
    body: str | bytes | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    require_auth: str | None = None

    def payload(self) -> tuple[bytes, str]:
        if isinstance(self.body, dict | list):
            return json.dumps(self.body).encode(), "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return self.body, "application/octet-stream"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real services do
    wbufsize = 65536  # one write per response: no Nagle/delayed-ACK stall between parts
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.hits.append((path, dict(self.headers.items())))
        route = self.server.routes.get(path, Route(404, "not found"))
        if route.delay:
            time.sleep(route.delay)
        if route.require_auth is not None and self.headers.get("Authorization") != \
                route.require_auth:
            route = Route(401, "unauthorized")
        body, content_type = route.payload()
        self.send_response(route.status)
        headers = {"Content-Type": content_type, **route.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    hits: list[tuple[str, dict[str, str]]]


class HttpServer:
    """A threaded HTTP/1.1 server with scriptable routes, optionally over TLS."""

    def __init__(self, routes: dict[str, Route] | None = None, *,
                 tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, 0), _Handler)
        self._server.routes = dict(routes or {})
        self._server.hits = []
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def routes(self) -> dict[str, Route]:
        return self._server.routes

    @property
    def hits(self) -> list[tuple[str, dict[str, str]]]:
        """(path, request headers) of every request served, in order."""
        return self._server.hits

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def __enter__(self) -> HttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class SilentServer:
    """A socket that listens (so connects succeed) but never accepts or answers."""

    def __init__(self, backlog: int = 64) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = int(self.sock.getsockname()[1])
        self._clients: list[socket.socket] = []

    def __enter__(self) -> int:
        return self.port

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for client in self._clients:
            client.close()
        self.sock.close()


class FullBacklogServer(SilentServer):
    """listen(0) and never accept, with the accept queue filled by our own connections,
    so the kernel drops further SYNs and new connects time out."""

    def __init__(self) -> None:
        super().__init__(backlog=0)
        for _ in range(8):  # the queue holds backlog+1; stop at the first that cannot get in
            client = socket.socket()
            client.settimeout(0.3)
            try:
                client.connect(("127.0.0.1", self.port))
            except OSError:
                client.close()
                return
            self._clients.append(client)
        raise RuntimeError("could not fill the accept backlog")


@dataclass
class TlsFiles:
    """A CA file the client trusts and a server context presenting a leaf certificate."""

    ca_file: str
    server_context: ssl.SSLContext

    @classmethod
    def make(cls, directory: Path, *names: str, not_after: datetime | None = None,
             trusted: bool = True) -> TlsFiles:
        """A trustme CA + leaf for `names`; with trusted=False the CA file holds an
        unrelated CA, so the leaf's chain is untrusted."""
        import trustme

        ca = trustme.CA()
        leaf = ca.issue_cert(*names, not_after=not_after,
                             not_before=min(datetime.now(UTC) - timedelta(days=30),
                                            (not_after or datetime.now(UTC)) - timedelta(1)))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        ca_path = directory / f"ca-{id(ca)}.pem"
        (trustme.CA() if not trusted else ca).cert_pem.write_to_path(str(ca_path))
        return cls(str(ca_path), context)


def self_signed(directory: Path, name: str) -> ssl.SSLContext:
    """A server context presenting a self-signed certificate for `name` (made with
    cryptography, trusted by nobody)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "self.pem", directory / "self.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context




class RawServer:
    """Answers the n-th request head of each connection with the n-th payload, bytes as
    they are (junk or odd framing, on purpose), then closes the connection, or with
    `hold=True` keeps it open and silent. Records request heads and connections.

        with RawServer(b"HTTP/1.1 200 OK\\r\\n...", hold=True, host="::1") as port: ...
    """

    def __init__(self, *payloads: bytes, hold: bool = False, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.payloads, self.hold = payloads, hold
        self.requests: list[bytes] = []
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client: socket.socket) -> None:
        with client:
            client.settimeout(0.2)
            buffer = b""
            try:
                for payload in self.payloads:
                    while b"\r\n\r\n" not in buffer:
                        data = self._recv(client)
                        if not data:
                            return
                        buffer += data
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    self.requests.append(head)
                    client.sendall(payload)
                while self.hold and self._recv(client):
                    pass  # silent until the client or the server goes away
            except OSError:
                pass

    def _recv(self, client: socket.socket) -> bytes:
        while not self._stop.is_set():
            try:
                return client.recv(65536)
            except TimeoutError:
                continue
        return b""

    def __enter__(self) -> int:
        self._thread.start()
        return self.port

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(2)


# --- network namespaces ---------------------------------------------------------------

_RUN_IN_NAMESPACE = """
import json, socket, sys, threading
from stackmedic.testing import run_components
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)
port = str(listener.getsockname()[1])
def answer():  # a minimal HTTP server, for http components; a tcp connect just closes
    while True:
        client, _ = listener.accept()
        client.settimeout(2)
        try:
            client.recv(65536)
            client.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n"
                           b"Connection: close\\r\\n\\r\\nok")
        except OSError:
            pass
        client.close()
threading.Thread(target=answer, daemon=True).start()
components = json.loads(sys.argv[1].replace('"$PORT"', port).replace("$PORT", port))
run = run_components(components, deadline=3)
print(json.dumps([f.to_dict() for f in run.findings]))
"""


def network_namespace() -> Iterator[str]:
    """Fixture body: a throwaway namespace with lo up, 10.200.0.1/24 on a veth pair, a
    resolv.conf naming the namespace's own 127.0.0.1, so nothing leaves it, and a hosts
    file where `dual.stackmedic.test` is ::1 first, then 127.0.0.1 (as `localhost` is on
    many hosts). Skips where namespaces cannot be made (not root, no iproute2)."""
    import pytest

    if shutil.which("ip") is None:
        pytest.skip("iproute2 is not installed")
    name = f"smtest-{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode:
        pytest.skip("cannot create network namespaces here (needs root and netns support)")
    etc = Path("/etc/netns") / name
    try:
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                    ["ip", "addr", "add", "10.200.0.1/24", "dev", "v0"],
                    ["ip", "link", "set", "v0", "up"], ["ip", "link", "set", "v1", "up"]):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True, capture_output=True)
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n::1 dual.stackmedic.test\n"
                                   "127.0.0.1 dual.stackmedic.test\n")
        yield name
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def run_in_namespace(name: str, components: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the doctor over `components` inside namespace `name`, with a listener on
    127.0.0.1 whose port replaces "$PORT" in the specs; the findings as JSON dicts."""
    done = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-c",
                           _RUN_IN_NAMESPACE, json.dumps(components)],
                          capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise RuntimeError(f"run in namespace {name} failed: {done.stderr[-2000:]}")
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    return findings
