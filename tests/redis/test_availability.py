"""Reachability faults: a stopped server, wrong credentials, a full maxclients."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import redis
from stackmedic.errors import ConfigError
from stackmedic.findings import Finding, Severity
from stackmedic.testing import run_components, symptoms
from tests.fixtures.ports import free_port
from tests.fixtures.redis import RedisServer
from tests.redis.conftest import FAST, admin, diagnose, only, wait_for


def test_a_stopped_server_is_cache_down(redis_factory: Callable[..., RedisServer]) -> None:
    """A server that was stopped is reported critical cache.down and nothing else."""
    server = redis_factory()
    server.stop()
    findings = diagnose(server.url)
    down = only(findings, "cache.down")
    assert down.severity is Severity.CRITICAL
    assert down.evidence["error_kind"] == "refused"
    assert symptoms(findings) == {"cache.down"}
    assert down.remedy is not None and down.remedy.steps


def test_a_missing_password_is_cache_auth_failed(
        redis_factory: Callable[..., RedisServer]) -> None:
    """requirepass with no password configured gives cache.auth.failed (NOAUTH)."""
    server = redis_factory("--requirepass", "s3cret-pass")
    finding = only(diagnose(server.url), "cache.auth.failed")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["user"] == "default"


def test_a_wrong_acl_password_names_the_user_never_the_password(
        redis_factory: Callable[..., RedisServer]) -> None:
    """WRONGPASS for an ACL user names the user; neither password appears in the output."""
    server = redis_factory("--requirepass", "admin-pass-1")
    admin(server, password="admin-pass-1").acl_setuser(
        "app", enabled=True, passwords=["+right-pass-2"], commands=["+@all"], keys=["*"])
    run = run_components({"cache": {"kind": "redis", "url": server.url, "username": "app",
                                    "password": "wrong-pass-3", **FAST}})
    finding = only(run.findings, "cache.auth.failed")
    assert finding.severity is Severity.CRITICAL
    assert "'app'" in finding.summary
    text = json.dumps([f.to_dict() for f in run.findings]) + json.dumps(run.facts)
    assert "wrong-pass-3" not in text and "right-pass-2" not in text


def test_a_url_password_is_redacted_from_the_output(
        redis_factory: Callable[..., RedisServer]) -> None:
    """A password inside the URL authenticates but never appears in findings or facts."""
    server = redis_factory("--requirepass", "url-secret-4")
    url = f"redis://:url-secret-4@127.0.0.1:{server.port}/0"
    run = run_components({"cache": {"kind": "redis", "url": url, **FAST}})
    assert only(run.findings, "cache.auth.failed").severity is Severity.OK
    assert "url-secret-4" not in json.dumps([f.to_dict() for f in run.findings]) + \
        json.dumps(run.facts)


def test_a_full_maxclients_is_cache_clients_rejected(
        redis_factory: Callable[..., RedisServer]) -> None:
    """maxclients 10 with 20 connections open: our own connection is rejected."""
    server = redis_factory("--maxclients", "10")
    held = [admin(server) for _ in range(20)]
    accepted = 0
    for client in held:
        try:
            client.ping()
            accepted += 1
        except redis.ConnectionError:
            pass
    assert accepted == 10
    finding = only(diagnose(server.url), "cache.clients.rejected", "redis.availability")
    assert finding.severity is Severity.CRITICAL
    assert "max number of clients" in finding.summary
    for client in held:
        client.close()


def test_connections_near_maxclients_warn_and_rejections_in_the_run_are_critical(
        redis_factory: Callable[..., RedisServer]) -> None:
    """9 of 10 slots taken plus ours is critical; new rejections during the run are too."""
    server = redis_factory("--maxclients", "10")
    held = [admin(server) for _ in range(9)]
    for client in held:
        client.ping()
    finding = only(diagnose(server.url), "cache.clients.rejected", "redis.clients")
    assert finding.severity is Severity.CRITICAL
    assert finding.observed == 1.0
    assert finding.evidence["connected"] == 10
    for client in held:
        client.close()


def test_rejections_during_the_run_are_critical(
        redis_factory: Callable[..., RedisServer]) -> None:
    """Connections refused while the doctor samples make cache.clients.rejected critical."""
    server = redis_factory("--maxclients", "10")
    held = [admin(server) for _ in range(9)]
    for client in held:
        client.ping()
    result: dict[str, list[Finding]] = {}
    doctor = threading.Thread(target=lambda: result.update(
        findings=diagnose(server.url, sample_interval_s=1.5, rtt_samples=10)))
    doctor.start()
    # The doctor holds the tenth slot and has taken its first INFO sample: now overflow.
    wait_for(lambda: "cmdstat_config|get" in held[0].info("commandstats"),
             "the doctor's first sample")
    for _ in range(3):
        with pytest.raises(redis.ConnectionError):
            admin(server).ping()
    doctor.join(30)
    finding = only(result["findings"], "cache.clients.rejected", "redis.clients")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["rejected_during_interval"] == 3
    for client in held:
        client.close()


ROOT = Path(__file__).resolve().parents[2]


def _documented_acl(path: Path) -> list[str]:
    """The rules of the one `ACL SETUSER` line in `path`, after user and password."""
    lines = [line.split() for line in path.read_text().splitlines()
             if line.strip().startswith("ACL SETUSER")]
    assert len(lines) == 1, f"{path}: expected one ACL SETUSER line"
    words = lines[0]
    assert words[3] == "on" and words[4].startswith(">")
    return words[5:]


@pytest.mark.parametrize("source", ["docs/redis.md",
                                    "src/stackmedic/runbooks/cache.auth.failed.md"])
def test_the_documented_acl_is_enough_for_a_clean_run(
        redis_factory: Callable[..., RedisServer], source: str) -> None:
    """A user with exactly the permissions the docs (or the auth runbook) give gets no
    unknown or denial."""
    server = redis_factory()
    admin(server).execute_command("ACL", "SETUSER", "probe", "on", ">probe-pass-5",
                                  *_documented_acl(ROOT / source))
    admin(server).set("k", "v")
    run = run_components({"cache": {"kind": "redis", "url": server.url, "username": "probe",
                                    "password": "probe-pass-5", **FAST}})
    assert run.facts["cache"]["server"]["denied"] == []
    assert [f.summary for f in run.findings if f.is_problem] == []
    assert run.facts["cache"]["server"]["bigkeys"]["scanned"] == 1


def test_a_user_without_info_gets_unknown_verdicts(
        redis_factory: Callable[..., RedisServer]) -> None:
    """An ACL user denied INFO still gets a run, with unknown findings naming the denial."""
    server = redis_factory()
    admin(server).execute_command("ACL", "SETUSER", "weak", "on", ">weak-pass-6", "~*",
                                  "-@all", "+@connection")
    run = run_components({"cache": {"kind": "redis", "url": server.url, "username": "weak",
                                    "password": "weak-pass-6", **FAST}})
    assert "INFO" in run.facts["cache"]["server"]["denied"]
    assert only(run.findings, "cache.memory.near_limit").severity is Severity.UNKNOWN
    assert only(run.findings, "cache.down").severity is Severity.OK


def test_a_unix_socket_url_works(redis_factory: Callable[..., RedisServer]) -> None:
    """`unix:///path.sock` reaches a server listening only on a socket."""
    server = redis_factory("--unixsocket", "redis.sock", "--unixsocketperm", "700")
    findings = diagnose(f"unix://{server.dir}/redis.sock")
    assert only(findings, "cache.down").severity is Severity.OK
    assert [f.summary for f in findings if f.is_problem] == []


def test_a_stopped_unix_socket_server_gets_redis_cli_s_remedies(
        redis_factory: Callable[..., RedisServer]) -> None:
    """cache.down of a socket server tells the operator `redis-cli -s PATH`, which works,
    not `redis-cli -u unix://…`, which redis-cli rejects."""
    server = redis_factory("--unixsocket", "redis.sock", "--unixsocketperm", "700")
    server.stop()
    down = only(diagnose(f"unix://{server.dir}/redis.sock"), "cache.down")
    assert down.severity is Severity.CRITICAL and down.remedy is not None
    assert down.evidence["cli"] == f"redis-cli -s {server.dir}/redis.sock"
    text = "\n".join(down.remedy.steps)
    assert f"redis-cli -s {server.dir}/redis.sock --latency" in text
    assert "redis-cli -u" not in text and "unixsocket" in text


def test_a_server_that_never_answers_is_down_by_timeout() -> None:
    """A listener that accepts but never replies gives cache.down with a timeout, not a hang."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes handshakes; nobody ever reads or writes
        port = listener.getsockname()[1]
        findings = diagnose(f"redis://127.0.0.1:{port}/0", timeout=1.0)
    down = only(findings, "cache.down")
    assert down.severity is Severity.CRITICAL
    assert down.evidence["error_kind"] == "timeout"


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis://127.0.0.1:99999/0",
                                 "redis://127.0.0.1:abc/0", "redis://127.0.0.1:6379/xyz",
                                 "redis://[::1/0", "unix://"])
def test_a_malformed_url_is_a_config_error(url: str) -> None:
    """A wrong scheme, port, database or socket path is rejected when the stack file is
    validated, naming the key, instead of failing (or being ignored) at run time."""
    with pytest.raises(ConfigError, match=r"components\.cache\.url"):
        diagnose(url)


def test_rediss_with_the_right_ca_works_and_an_untrusted_one_is_tls_down(
        redis_factory: Callable[..., RedisServer], tmp_path: Path) -> None:
    """A TLS server is checked with `tls_ca_file`; without it the handshake failure is named."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    port = free_port()
    redis_factory("--tls-port", str(port), "--tls-cert-file", str(tmp_path / "cert.pem"),
                  "--tls-key-file", str(tmp_path / "key.pem"),
                  "--tls-ca-cert-file", str(tmp_path / "ca.pem"), "--tls-auth-clients", "no")
    url = f"rediss://127.0.0.1:{port}/0"
    trusted = diagnose(url, tls_ca_file=str(tmp_path / "ca.pem"))
    assert [f.summary for f in trusted if f.is_problem] == []
    untrusted = only(diagnose(url), "cache.down")
    assert untrusted.severity is Severity.CRITICAL
    assert untrusted.evidence["error_kind"] == "tls"
