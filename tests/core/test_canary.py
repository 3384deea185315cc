"""A canary secret planted in config, environment and server responses appears in no
output format, nor in recorded facts; a short plain-word password leaves the words it
spells alone."""

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stackmedic.cli import main
from tests.fixtures.ports import free_port
from tests.fixtures.redis import RedisServer

CANARY = "canary-7d3a9f1e"
SHORT = "S3cret!"  # below the length masked anywhere: masked as a token


class _Leaky(BaseHTTPRequestHandler):
    """Answers 500 and echoes every request header plus the canary in its body."""

    def do_GET(self) -> None:
        body = json.dumps({"status": "fail", "error": f"db password {CANARY} rejected",
                           "detail": f"login failed: {SHORT} (password {SHORT}) denied",
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
    """The canary from a DSN, a header, an env var and a server's body, and a short
    password a server echoes, are masked in every format and in --record output."""
    monkeypatch.setenv("API_TOKEN", CANARY)
    monkeypatch.setenv("DB_PASSWORD", CANARY)
    monkeypatch.setenv("CACHE_PASSWORD", SHORT)
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
    for secret in (CANARY, SHORT):
        assert secret not in out and secret not in err
        assert secret not in record.read_text()


def test_word_passwords_do_not_mangle_the_report(
        redis_factory: Callable[..., RedisServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With the passwords `redis` (accepted) and `wrong` (refused) from the environment,
    the report still reads `redis-cli`, `redis://` and "wrong password", and a missing
    variable's error is not masked after its `password:` key."""
    server = redis_factory("--requirepass", "redis")
    monkeypatch.setenv("SESSIONS_PW", "redis")
    monkeypatch.setenv("BAD_PW", "wrong")
    stack = tmp_path / "stackmedic.yaml"
    stack.write_text(f"""\
components:
  sessions: {{kind: redis, url: "{server.url}", password: "${{SESSIONS_PW}}"}}
  cache: {{kind: redis, url: "{server.url}", password: "${{BAD_PW}}"}}
""")
    with pytest.raises(SystemExit):
        main(["doctor", "-c", str(stack), "-f", "markdown", "--deadline", "8"])
    out = capsys.readouterr().out
    assert "***-cli" not in out and "***://" not in out
    assert "redis-cli -h 127.0.0.1" in out and f"redis://127.0.0.1:{server.port}" in out
    assert "wrong password" in out and "CONFIG SET requirepass NEW_PASSWORD" in out
    monkeypatch.delenv("BAD_PW")
    with pytest.raises(SystemExit):
        main(["config", "check", str(stack)])
    err = capsys.readouterr().err
    assert "components.cache.password: environment variable ${BAD_PW} is not set" in err
