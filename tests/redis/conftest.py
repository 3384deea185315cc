"""Helpers for the Redis probe tests: run the doctor on one server, drive workloads.

The servers come from the shared `redis_factory` fixture; tests use a plain redis-py
client (`admin`) to induce faults on their own throwaway server.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.backoff import NoBackoff
from redis.retry import Retry

import redis
from stackmedic.findings import Finding
from stackmedic.history import History
from stackmedic.testing import run_components
from tests.fixtures.redis import RedisServer

FAST = {"sample_interval_s": 0.4, "rtt_samples": 5, "bigkey_budget_s": 0.5}


def admin(server: RedisServer, **kwargs: Any) -> redis.Redis:
    """An unrestricted client for inducing faults on a test's own server."""
    # No retries: a rejected connection must fail at once, not after backoff rounds.
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=10,
                       driver_info=None, retry=Retry(NoBackoff(), 0), **kwargs)


def diagnose(url: str, deadline: float = 10.0, history: History | None = None,
             **fields: Any) -> list[Finding]:
    """Run the doctor on one redis component and return its findings."""
    spec = {"kind": "redis", "url": url, **FAST, **fields}
    return run_components({"cache": spec}, deadline=deadline, history=history).findings


def only(findings: list[Finding], symptom: str, check: str | None = None) -> Finding:
    """The single finding with `symptom` (and `check`); fails the test otherwise."""
    found = [f for f in findings if f.symptom == symptom and (check is None or f.check == check)]
    assert len(found) == 1, f"expected one {symptom}, got {[f.summary for f in found]}"
    return found[0]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll until `condition()` holds (the fault is really in place) or fail."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Workload:
    """Run `step` in a loop in a thread while the doctor samples the server."""

    def __init__(self, step: Callable[[], Any]) -> None:
        self._step = step
        self._stop = threading.Event()
        self.errors: list[Exception] = []
        self.rounds = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except redis.RedisError as err:  # e.g. OOM replies: the fault itself
                self.errors.append(err)
            self.rounds += 1

    def __enter__(self) -> Workload:
        self._thread.start()
        wait_for(lambda: self.rounds > 0, "the workload to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def immutable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory even root cannot create files in (chattr +i), undone at teardown."""
    path = tmp_path / "readonly"
    path.mkdir()
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported on this filesystem")
    yield path
    subprocess.run(["chattr", "-i", str(path)], check=True)
