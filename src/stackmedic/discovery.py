"""Autodiscovery: what `stackmedic doctor` checks when there is no stack file.

The local host, every component kind whose probe declares `default_ports` and that
answers on 127.0.0.1, well-known services without a deep probe as plain TCP
components, and `./logs/*.log` attached to the host for the log checks.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from stackmedic.checks import all_probes
from stackmedic.config import Stack, parse_stack

__all__ = ["discover_stack", "discovery_spec"]

# Services that answer on a well-known port but have no deep probe (yet): TCP checks.
WELL_KNOWN = {3306: "mariadb", 5672: "rabbitmq"}
CONNECT_TIMEOUT = 0.3


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def discovery_spec(host: str = "127.0.0.1", logs_dir: str | Path = "logs",
                   ports: dict[int, str] | None = None) -> dict[str, Any]:
    """The stack-file document discovery would build (a plain dict, for inspection).

    `ports` maps port → component kind; by default every probe's `default_ports`
    plus WELL_KNOWN ports as `tcp`.
    """
    probes = all_probes()
    if ports is None:
        ports = {port: kind for kind, probe in probes.items() for port in probe.default_ports}
        if "tcp" in probes:
            ports.update(dict.fromkeys(WELL_KNOWN, "tcp"))
    with ThreadPoolExecutor(max_workers=max(1, len(ports))) as pool:
        open_ports = [port for port, ok in zip(ports, pool.map(
            lambda p: _answers(host, p), ports), strict=True) if ok]
    components: dict[str, dict[str, Any]] = {}
    if "host" in probes:
        logs = sorted(str(p) for p in Path(logs_dir).glob("*.log")) if Path(logs_dir).is_dir() \
            else []
        components["host"] = {"kind": "host", **({"logs": logs} if logs else {})}
    for port in sorted(open_ports):
        kind = ports[port]
        probe = probes[kind]
        name = WELL_KNOWN.get(port, kind if list(ports.values()).count(kind) == 1
                              else f"{kind}-{port}")
        spec = probe.discover(host, port) if probe.discover else {"host": host, "port": port}
        components[name] = {"kind": kind, **spec}
    return {"stack": socket.gethostname() or "localhost", "components": components}


def discover_stack(host: str = "127.0.0.1", logs_dir: str | Path = "logs",
                   ports: dict[int, str] | None = None) -> Stack:
    """A validated `Stack` for the local machine (see `discovery_spec`)."""
    doc = discovery_spec(host, logs_dir, ports)
    return parse_stack(yaml.safe_dump(doc, sort_keys=False), "<discovered>")
