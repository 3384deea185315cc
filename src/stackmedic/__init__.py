"""stackmedic: production troubleshooting guides turned into working software.

Public names load on first use, so `stackmedic --help` pays only for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stackmedic.findings import Finding, Remedy, Severity

__version__ = "0.1.0"

__all__ = ["Finding", "Remedy", "Severity", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Finding", "Remedy", "Severity"):
        from stackmedic import findings

        return getattr(findings, name)
    raise AttributeError(f"module 'stackmedic' has no attribute {name!r}")
