"""host.fd.exhausted never suggests an RLIMIT_NOFILE above fs.nr_open, the kernel's
per-process ceiling: systemd fails to start a unit whose LimitNOFILE exceeds it.

The process is real (a child that lowers its own limit and fills it). This sandbox
cannot give a process a limit above its hard limit, nor change fs.nr_open (a global
sysctl), so the ceiling cases apply the rule to the collector's real facts with
`nr_open` set to values a kernel accepts (any from 64 up)."""

from __future__ import annotations

from typing import Any

from stackmedic.findings import Severity
from tests.probes.helpers_host import child, only
from tests.probes.test_host import FD_HOG, rule_findings, run_host


def _process_finding(facts: dict[str, Any], nr_open: int) -> Any:
    _system, process = rule_findings("host.fd", facts | {"nr_open": nr_open})
    return process


def test_suggested_nofile_is_capped_at_the_kernels_nr_open() -> None:
    """The real nr_open is read and bounds the suggestion; a lower ceiling caps the
    LimitNOFILE/prlimit value at it, and a limit already at the ceiling gets no raise
    at all, but the step saying the ceiling itself must move."""
    with child(FD_HOG) as hog:
        run = run_host()
    with open("/proc/sys/fs/nr_open") as handle:
        nr_open = int(handle.read())
    real = only(run, "host.fd.exhausted", scope="process")
    assert real.evidence["nr_open"] == nr_open
    assert 64 < real.evidence["suggested_nofile"] <= nr_open
    facts = run.facts["box"]["fds"]
    facts = facts | {"processes": [p for p in facts["processes"] if p["pid"] == hog.pid]}
    assert facts["processes"][0]["soft_limit"] == 64

    capped = _process_finding(facts, 32768)
    assert capped.severity is Severity.CRITICAL and capped.remedy is not None
    steps = "\n".join(capped.remedy.steps)
    assert "LimitNOFILE=32768" in steps and "--nofile=32768:32768" in steps
    assert "65536" not in steps and "capped at the kernel's per-process ceiling" in steps

    ceiling = _process_finding(facts, 64)
    assert ceiling.remedy is not None
    steps = "\n".join(ceiling.remedy.steps)
    assert "LimitNOFILE" in steps and "LimitNOFILE=" not in steps and "--nofile=" not in steps
    assert "sysctl -w fs.nr_open=N" in steps and "already equals `fs.nr_open` (64)" in steps
