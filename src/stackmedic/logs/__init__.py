"""Logs: readers, signature packs and matcher, template miner, spikes and N+1.

The doctor calls `logs_findings(paths, component)` for each component's `logs:`;
the `stackmedic logs` commands live in `stackmedic.logs.cli`. Submodules import
lazily so that importing this package costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stackmedic.logs.diagnose import LogOptions, logs_findings
    from stackmedic.logs.miner import mine

__all__ = ["LogOptions", "logs_findings", "mine"]

_WHERE = {"LogOptions": "stackmedic.logs.diagnose", "logs_findings": "stackmedic.logs.diagnose",
          "mine": "stackmedic.logs.miner"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'stackmedic.logs' has no attribute {name!r}")
