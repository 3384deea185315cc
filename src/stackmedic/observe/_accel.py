"""The optional C speedups (`_speedups.c`), or None where they are not built.

`STACKMEDIC_PURE_PYTHON=1` turns them off, to compare or to rule them out; results are
the same either way, only slower (tests/observe run both).
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["speedups"]


def _load() -> ModuleType | None:
    if os.environ.get("STACKMEDIC_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from stackmedic.observe import _speedups
    except ImportError:
        return None
    return _speedups


speedups: ModuleType | None = _load()
