"""Small helpers the `host`, `process` and `fs` probes share.

Describing a process the same way everywhere (pid, name, a capped command line with
passwords given as arguments masked), reading a small regular file with a size cap
and without blocking, printing byte counts for humans, keeping evidence lists
bounded, judging a value with a cause only problems carry, and keeping only the
runbook steps a finding's evidence can fill. psutil is imported inside the functions
that need it, so importing this stays cheap.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, TypeVar

from stackmedic.findings import Remedy, Severity

if TYPE_CHECKING:
    from stackmedic.checks import RuleContext
    from stackmedic.findings import Finding

__all__ = ["CMDLINE_CAP", "EVIDENCE_CAP", "applicable_remedy", "describe_process",
           "human_bytes", "join_cmdline", "judge", "read_bytes_capped", "read_capped", "spread"]

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


def read_bytes_capped(path: str, cap: int = 65536) -> bytes:
    """The first `cap` bytes of a regular (or /proc) file; OSError propagates.

    Opened non-blocking and refused unless regular: a FIFO or a device where a pidfile
    or an env file should be would otherwise block the read until the deadline."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    fd = os.open(Path(path).expanduser(), flags)
    with open(fd, "rb", closefd=True) as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return handle.read(cap)


def read_capped(path: str, cap: int = 65536) -> str:
    """`read_bytes_capped` decoded as UTF-8 (undecodable bytes replaced)."""
    return read_bytes_capped(path, cap).decode("utf-8", "replace")


# Tools that take a password as an option that does not name it: `mysql -pSECRET`,
# `redis-cli -a SECRET`, `sshpass -p SECRET`, `curl -u user:SECRET`. Long forms such as
# `--password=…` are masked by stackmedic.redact in every output already.
_ATTACHED = {"mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlcheck", "mysqlshow",
             "mariadb", "mariadb-dump", "mariadb-admin", "sshpass"}  # -pSECRET
_NEXT = {"redis-cli": ("-a",), "valkey-cli": ("-a",), "keydb-cli": ("-a",),
         "redis-benchmark": ("-a",), "sshpass": ("-p",), "curl": ("-u", "--user"),
         "wget": ("--http-password", "--ftp-password")}
_MASK = "***"


def join_cmdline(argv: Sequence[str] | None) -> str | None:
    """A command line for evidence: capped, with passwords passed as arguments masked."""
    if not argv:
        return None
    tool = PurePath(argv[0]).name
    out = list(argv)
    for i, arg in enumerate(out[1:], start=1):
        if argv[i - 1] in _NEXT.get(tool, ()):
            # curl -u user:password keeps the user; the others are the secret whole.
            user, sep, _secret = arg.partition(":")
            out[i] = f"{user}:{_MASK}" if tool == "curl" and sep else \
                arg if tool == "curl" else _MASK
        elif tool in _ATTACHED and arg.startswith("-p") and len(arg) > 2:
            out[i] = "-p" + _MASK
    return " ".join(out).strip()[:CMDLINE_CAP] or None


def describe_process(pid: int | None) -> dict[str, Any]:
    """pid, name and a capped command line, as far as this user may see them."""
    import psutil

    info: dict[str, Any] = {"pid": pid, "name": None, "cmdline": None}
    if pid is None:
        return info
    try:
        proc = psutil.Process(pid)
        info["name"] = proc.name()
        info["cmdline"] = join_cmdline(proc.cmdline())
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
    return applicable_remedy(ctx.judge(symptom, observed, summary,
                                       cause=cause if problem else None, **fields))


_EVIDENCE_PLACEHOLDER = re.compile(r"\{evidence\.([A-Za-z0-9_]+)\}")


def applicable_remedy(finding: Finding) -> Finding:
    """The finding with its runbook's *Fix* steps filled in, leaving out the steps that
    name evidence this finding does not have (`rm -f {evidence.pidfile_path}` when no
    pidfile was configured, `kill {evidence.holder_pid}` when the holder is hidden):
    such a step does not apply to this case, and a `<placeholder>` command misleads."""
    from stackmedic.runbooks import fill, fix_steps, has_runbook, load_runbook

    if finding.remedy is not None or not finding.is_problem or \
            not has_runbook(finding.symptom):
        return finding
    steps = [step for step in fix_steps(load_runbook(finding.symptom))
             if all(isinstance(finding.evidence.get(key), str | int | float)
                    and not isinstance(finding.evidence.get(key), bool)
                    for key in _EVIDENCE_PLACEHOLDER.findall(step))]
    return replace(finding, remedy=Remedy(runbook=finding.symptom,
                                          steps=tuple(fill(step, finding) for step in steps)))
