"""Small helpers the `host`, `process` and `fs` probes share.

Describing a process the same way everywhere (pid, name, a capped command line),
reading a pseudo-file with a size cap, printing byte counts for humans, keeping
evidence lists bounded, and judging a value with a cause only problems carry.
psutil is imported inside the functions that need it, so importing this stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from stackmedic.findings import Severity

if TYPE_CHECKING:
    from stackmedic.checks import RuleContext
    from stackmedic.findings import Finding

__all__ = ["CMDLINE_CAP", "EVIDENCE_CAP", "describe_process", "human_bytes", "judge",
           "read_capped", "spread"]

CMDLINE_CAP = 200  # characters of a command line kept in evidence
EVIDENCE_CAP = 10  # samples kept in any evidence list

T = TypeVar("T")


def human_bytes(count: float) -> str:
    """1536 → '1.5 KiB'; the unit a person reading `df -h` expects."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def read_capped(path: str, cap: int = 65536) -> str:
    """The first `cap` bytes of a (pseudo-)file as text; OSError propagates."""
    with open(path, "rb") as handle:
        return handle.read(cap).decode("utf-8", "replace")


def describe_process(pid: int | None) -> dict[str, Any]:
    """pid, name and a capped command line, as far as this user may see them."""
    import psutil

    info: dict[str, Any] = {"pid": pid, "name": None, "cmdline": None}
    if pid is None:
        return info
    try:
        proc = psutil.Process(pid)
        info["name"] = proc.name()
        info["cmdline"] = " ".join(proc.cmdline()).strip()[:CMDLINE_CAP] or None
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        pass  # gone or hidden: the pid alone is still worth reporting
    return info


def spread(items: Sequence[T], cap: int = EVIDENCE_CAP) -> list[T]:
    """At most `cap` items evenly spread over `items`, first and last always kept."""
    if len(items) <= cap:
        return list(items)
    step = (len(items) - 1) / (cap - 1)
    return [items[round(i * step)] for i in range(cap)]


def judge(ctx: RuleContext, symptom: str, observed: float, summary: str, *, cause: str,
          **fields: Any) -> Finding:
    """`ctx.judge`, with `cause` kept only when the verdict is a problem."""
    problem = ctx.threshold(symptom).classify(observed) is not Severity.OK
    return ctx.judge(symptom, observed, summary, cause=cause if problem else None, **fields)
