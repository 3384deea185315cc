"""A canary secret planted in config, environment and server responses appears in no
output format, nor in recorded facts."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stackmedic.cli import main
from tests.fixtures.ports import free_port

CANARY = "canary-7d3a9f1e"


class _Leaky(BaseHTTPRequestHandler):
    """Answers 500 and echoes every request header plus the canary in its body."""

    def do_GET(self) -> None:
        body = json.dumps({"status": "fail", "error": f"db password {CANARY} rejected",
                           "token": CANARY, "echo": dict(self.headers)}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Debug-Token", CANARY)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def leaky_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Leaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("fmt", ["terminal", "json", "markdown", "nagios"])
def test_canary_never_printed(fmt: str, leaky_server: int, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """The canary from a DSN, a header, an env var and a server's body is masked in
    every format and in --record output."""
    monkeypatch.setenv("API_TOKEN", CANARY)
    monkeypatch.setenv("DB_PASSWORD", CANARY)
    closed = free_port()
    stack = tmp_path / "stackmedic.yaml"
    stack.write_text(f"""\
stack: canary
components:
  api:
    kind: http
    url: "http://127.0.0.1:{leaky_server}/"
    health: /health
    headers: {{Authorization: "Bearer ${{API_TOKEN}}", X-Api-Key: "${{API_TOKEN}}"}}
    depends_on: [db]
  db:
    kind: postgres
    dsn: "postgresql://app:${{DB_PASSWORD}}@127.0.0.1:{closed}/app"
  note:
    kind: fake
    symptom: db.down
    value: 1
    evidence: {{dsn: "redis://:${{DB_PASSWORD}}@127.0.0.1:{closed}/0", detail: "${{API_TOKEN}}"}}
""")
    record = tmp_path / "facts.json"
    with pytest.raises(SystemExit):
        main(["doctor", "-c", str(stack), "-f", fmt, "--deadline", "5", "--record", str(record)])
    out, err = capsys.readouterr()
    assert "api" in out  # the report really was printed
    assert CANARY not in out and CANARY not in err
    assert CANARY not in record.read_text()
