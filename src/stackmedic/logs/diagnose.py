"""`logs_findings`: a component's log files turned into findings.

Two passes. The signature scan (`stackmedic.logs.scan`) reads the files in large
chunks on every core and gives one finding per signature that matched, plus an
`ok` finding with `observed=0` for each `logs.error.*` symptom nothing matched.
The record pass parses headers and multi-line records once and feeds the spike
detector (error-level records per window), the N+1 counter (SQL statements per
request) and, with a baseline, the template miner (error templates not in it).
"""

from __future__ import annotations

import os
import re
import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from stackmedic.findings import Finding, Remedy, Severity
from stackmedic.logs.baseline import load_baseline, redact_template
from stackmedic.logs.defaults import DEFAULT_THRESHOLDS, ERROR_SYMPTOMS
from stackmedic.logs.miner import TemplateMiner
from stackmedic.logs.nplusone import StatementCounter
from stackmedic.logs.readers import ReadStats, expand
from stackmedic.logs.scan import ScanResult, SignatureHits, minute_as_written, scan_files
from stackmedic.logs.signatures import load_packs
from stackmedic.logs.source import iter_records
from stackmedic.logs.spikes import SpikeSettings, find_spikes
from stackmedic.redact import redact_text
from stackmedic.runbooks import attach_remedy
from stackmedic.thresholds import Threshold, Thresholds

__all__ = ["DEFAULT_THRESHOLDS", "LogOptions", "logs_findings"]

MAX_NEW_TEMPLATES = 10


@dataclass
class LogOptions:
    """How a component's logs are examined (all optional)."""

    packs: list[str] = field(default_factory=list)
    baseline: str | None = None
    window: float = 60.0
    rotated: bool = True
    workers: int | None = None
    engine: str | None = None
    progress: bool | Callable[[int, int], None] = False
    thresholds: Thresholds | None = None
    record_bytes: int | None = 16 << 20
    """Spikes, N+1 and new templates parse the newest this-many bytes (None: all) record
    by record, at roughly 100k records a second; signatures always scan everything."""


def logs_findings(paths: Sequence[str | os.PathLike[str]], component: str,
                  options: LogOptions | None = None) -> list[Finding]:
    """Findings (symptoms `logs.*`, check ids `logs.*`) about `component` from its logs."""
    options = options or LogOptions()
    if not options.window > 0:
        raise ValueError(f"the spike window must be a positive number of seconds, "
                         f"got {options.window}")
    thresholds = options.thresholds or Thresholds(DEFAULT_THRESHOLDS)
    files = expand(paths, rotated=options.rotated)

    def judge(symptom: str) -> Threshold:
        try:
            return thresholds.get(symptom, component)
        except KeyError:
            return DEFAULT_THRESHOLDS[symptom]

    signatures = load_packs(options.packs)
    scan = scan_files(files, signatures, engine=options.engine, workers=options.workers,
                      progress=_progress(options.progress), count_lines=False)
    unreadable = scan.stats.unreadable
    out = [] if unreadable and len(unreadable) >= len(files) else [  # nothing was read
        *_signature_findings(scan, component, judge),
        *_signature_spike_findings(scan, options.window, component,
                                   judge("logs.error_rate.spike")),
        *_record_findings(files, component, options, judge, scan.stats)]
    if unreadable:
        out.append(_unreadable_finding(unreadable, component))
    return [attach_remedy(f) for f in out]


def _unreadable_finding(unreadable: list[str], component: str) -> Finding:
    """Log files that could not be read, with the steps for that (not a slow collector's)."""
    first = unreadable[0]
    quoted = shlex.quote(first)
    return Finding(
        "logs.read", "stackmedic.check.failed", component, Severity.UNKNOWN,
        f"cannot read {len(unreadable)} log file(s): {first}",
        evidence={"files": unreadable[:10], "error": _why_unreadable(first)},
        cause="the path is wrong, the service now logs elsewhere, or the file is not "
              "readable by this user", identity=("files",),
        remedy=Remedy(runbook="stackmedic.check.failed", steps=(
            f"See what is there: `ls -ld {quoted} $(dirname {quoted})`",
            "If the service logs elsewhere now (or only to journald), point `logs:` in the "
            "stack file at the files it writes",
            f"If the file exists, let the doctor's user read it: `setfacl -m "
            f"u:$(id -un):r {quoted}` (and `x` on its directories), or add that user to the "
            "log's group (`adm` on Debian)")))


def _why_unreadable(name: str) -> str:
    """Why a log path could not be read, in the words of the OS."""
    path = Path(name)
    if path.is_dir():
        return f"{name}: is a directory"
    if not path.exists():
        return f"{name}: no such file"
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        return f"{name}: {err.strerror or err}"
    return f"{name}: not a regular file"


def _progress(option: bool | Callable[[int, int], None]) -> Callable[[int, int], None] | None:
    if callable(option):
        return option
    if not option:
        return None
    import sys

    def show(done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        sys.stderr.write(f"\rscanning logs: {percent:3d}% of {total / 1e6:,.0f} MB")
        if done >= total:
            sys.stderr.write("\n")

    return show


def _severity(threshold: Threshold, observed: float, declared: str) -> Severity:
    severity = threshold.classify(observed)
    if severity is Severity.WARNING and declared == "critical":
        return Severity.CRITICAL
    if severity is not Severity.OK and declared == "info":
        return Severity.INFO
    return severity


def _signature_findings(scan: ScanResult, component: str,
                        judge: Callable[[str], Threshold]) -> list[Finding]:
    out: list[Finding] = []
    seen: Counter[str] = Counter()
    for hits in scan.hits:
        if hits.count:
            seen[hits.signature.symptom] += hits.count
            out.append(_signature_finding(hits, component, judge(hits.signature.symptom)))
    size = scan.stats.bytes
    amount = f"{size / 1e6:,.1f} MB" if size >= 1e6 else f"{size / 1e3:,.1f} kB"
    read = f"{scan.stats.lines:,} log lines" if scan.stats.lines_counted else \
        f"{amount} of logs in {scan.stats.files} file(s)"
    for symptom in ERROR_SYMPTOMS:
        if not seen[symptom]:
            out.append(Finding("logs.signature", symptom, component, Severity.OK,
                               f"no {symptom.rsplit('.', 1)[1].replace('_', ' ')} errors "
                               f"in {read}", observed=0, unit="lines",
                               evidence={"lines": scan.stats.lines, "engine": scan.engine,
                                         **scan.stats.as_dict()}))
    return out


def _signature_finding(hits: SignatureHits, component: str, threshold: Threshold) -> Finding:
    sig = hits.signature
    minutes = sorted(hits.per_minute.items())[-60:]
    evidence = {"signature": sig.id, "description": sig.description, "count": hits.count,
                "first_seen": hits.first_seen, "last_seen": hits.last_seen,
                "per_minute": dict(minutes), "examples": hits.examples,
                "example": hits.examples[0]["text"] if hits.examples else "",
                "file": hits.files[0] if hits.files else "", "files": hits.files}
    when = f" between {hits.first_seen} and {hits.last_seen}" if hits.first_seen else ""
    split = ""
    if sig.breakdown and hits.breakdown:
        by, ranked = sig.breakdown.by, hits.breakdown.most_common()
        evidence |= {f"by_{by}": dict(ranked), f"top_{by}": ranked[0][0]}
        split = " (" + ", ".join(f"{value}: {n:,}" for value, n in ranked[:5]) + ")"
    return Finding("logs.signature", sig.symptom, component,
                   _severity(threshold, hits.count, sig.severity),
                   f"{hits.count:,} log line(s) match {sig.id}{split}{when}: {sig.description}",
                   observed=hits.count, threshold=threshold.breached(), unit="lines",
                   evidence=evidence, cause=f"probably: {sig.description}",
                   identity=("signature",))


def _record_findings(files: Sequence[os.PathLike[str]], component: str, options: LogOptions,
                     judge: Callable[[str], Threshold], stats: ReadStats) -> list[Finding]:
    settings = SpikeSettings(window=options.window)
    errors: Counter[int] = Counter()
    sample: dict[int, tuple[str, str]] = {}  # window -> (file, first error line in it)
    statements = StatementCounter()
    miner = TemplateMiner() if options.baseline else None
    error_rows: list[tuple[int, str]] = []  # (row, file) of error records
    rows = 0
    for record in iter_records(files, ReadStats(), rotated=False, budget=options.record_bytes):
        if record.is_error and record.time is not None:
            window = int(record.time.timestamp() // settings.window)
            errors[window] += 1
            if window not in sample:
                sample[window] = (record.path, record.raw[:200])
        statements.add(record)
        if miner is not None:
            miner.add(record.message.split("\n", 1)[0])
            if record.is_error:
                error_rows.append((rows, record.path))
            rows += 1
    out = [_spike_finding(errors, sample, settings, component,
                          judge("logs.error_rate.spike"))]
    out += _n_plus_one_findings(statements, component, judge("logs.pattern.n_plus_one"))
    if miner is not None and options.baseline:
        out += _new_template_findings(miner, error_rows, options.baseline, component,
                                      judge("logs.template.new"))
    return out


def _spike_finding(errors: Counter[int], sample: dict[int, tuple[str, str]],
                   settings: SpikeSettings, component: str, threshold: Threshold) -> Finding:
    spikes = find_spikes(errors, settings)
    if not spikes:
        total = sum(errors.values())
        return Finding("logs.error_rate", "logs.error_rate.spike", component, Severity.OK,
                       f"no error spike ({total:,} error lines in {len(errors)} "
                       f"{settings.window:g}s windows)", observed=0, unit="x baseline",
                       evidence={"error_lines": total, "windows": len(errors),
                                 "window_seconds": settings.window})
    worst = max(spikes, key=lambda s: s.factor)
    path, line = sample.get(round(worst.window_start.timestamp() / settings.window), ("", ""))
    evidence = {**worst.as_evidence(), "file": path,
                "log_minute": minute_as_written(line, worst.window_start),
                "spikes": [s.as_evidence() for s in spikes[-10:]]}
    return Finding("logs.error_rate", "logs.error_rate.spike", component,
                   threshold.classify(worst.factor) if threshold.classify(worst.factor)
                   is not Severity.OK else Severity.INFO,
                   f"{worst.count} error lines in the {settings.window:g}s window from "
                   f"{evidence['window_start']} ({worst.factor:.1f}x the baseline of "
                   f"{worst.baseline:g})", observed=round(worst.factor, 2),
                   threshold=threshold.breached(), unit="x baseline", evidence=evidence,
                   cause="something started failing at that time: a deploy, a dependency "
                         "outage or a traffic surge (hypothesis; see the signatures that "
                         "matched in the same window)")


def _signature_spike_findings(scan: ScanResult, window: float, component: str,
                              threshold: Threshold) -> list[Finding]:
    """A spike finding for each signature whose per-window count jumps (problems only:
    the error-rate finding already carries the ok verdict)."""
    settings = SpikeSettings(window=max(window, 60.0))  # hits are counted per minute
    out = []
    for hits in scan.hits:
        counts: Counter[int] = Counter()
        for minute, n in hits.per_minute.items():
            at = datetime.strptime(minute, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
            counts[int(at.timestamp() // settings.window)] += n
        spikes = find_spikes(counts, settings)
        if not spikes:
            continue
        worst = max(spikes, key=lambda s: s.factor)
        severity = threshold.classify(worst.factor)
        if severity is Severity.OK:
            continue
        sig = hits.signature
        sample = hits.examples[0]["text"] if hits.examples else ""
        evidence = {**worst.as_evidence(), "signature": sig.id, "symptom_of_lines": sig.symptom,
                    "file": hits.files[0] if hits.files else "",
                    "log_minute": minute_as_written(sample, worst.window_start)}
        out.append(Finding(
            "logs.error_rate", "logs.error_rate.spike", component, severity,
            f"{sig.id}: {worst.count} lines in the {settings.window:g}s window from "
            f"{evidence['window_start']} ({worst.factor:.1f}x the baseline of "
            f"{worst.baseline:g})", observed=round(worst.factor, 2),
            threshold=threshold.breached(), unit="x baseline", evidence=evidence,
            cause=f"probably: {sig.description}, starting at that time",
            identity=("signature",)))
    return out


def _n_plus_one_findings(statements: StatementCounter, component: str,
                         threshold: Threshold) -> list[Finding]:
    minimum = int(threshold.breached() or 10)
    found = statements.repeated(minimum)
    if not found:
        return [Finding("logs.n_plus_one", "logs.pattern.n_plus_one", component, Severity.OK,
                        f"no statement repeated {minimum}+ times within one request",
                        observed=0, unit="queries per request")]
    return [Finding("logs.n_plus_one", "logs.pattern.n_plus_one", component,
                    threshold.classify(n.worst_count),
                    f"`{n.template[:80]}` ran {n.worst_count} times in request "
                    f"{n.worst_request} ({n.requests} request(s) repeat it {minimum}+ times)",
                    observed=n.worst_count, threshold=threshold.breached(),
                    unit="queries per request",
                    evidence={"template": n.template, "request": n.worst_request,
                              "count": n.worst_count, "requests": n.requests,
                              "example": redact_text(n.example),
                              "example_requests": list(n.example_requests)},
                    cause="probably a loop that loads related rows one at a time (lazy "
                          "loading) instead of one query with a join or IN list",
                    identity=("template",)) for n in found[:10]]


def _new_template_findings(miner: TemplateMiner, error_rows: list[tuple[int, str]],
                           baseline_path: str,
                           component: str, threshold: Threshold) -> list[Finding]:
    known = load_baseline(baseline_path)
    known_patterns = [re.compile(".*?".join(re.escape(part) for part in t.split("<*>")) + "$",
                                 re.DOTALL) for t in known]
    mined = miner.result()
    error_counts: Counter[int] = Counter()
    # The file of each template's first error line. (Not its line number: with a byte
    # budget the record pass starts inside a file, where line numbers are relative.)
    where: dict[int, str] = {}
    for row, path in error_rows:
        tid = mined.assignments[row]
        error_counts[tid] += 1
        where.setdefault(tid, path)
    out: list[Finding] = []
    for tid, count in error_counts.most_common():
        template = mined.templates[tid]
        text = redact_template(template.text)  # baselines store templates redacted
        # Known if the baseline has the same text, or a baseline template that matches
        # this one's example (a template mined from other data may differ in wildcards).
        if text in known or any(p.match(template.example) for p in known_patterns):
            continue
        path = where[tid]
        out.append(Finding(
            "logs.template", "logs.template.new", component, threshold.classify(count),
            f"new error message: `{text[:100]}` ({count} line(s))",
            observed=count, threshold=threshold.breached(), unit="lines",
            evidence={"template": text, "count": count,
                      "example": redact_text(template.example)[:500],
                      "file": path, "baseline": baseline_path},
            cause="a code path or failure mode that did not occur when the baseline was "
                  "taken (a new release or a new kind of failure)",
            identity=("template",)))
        if len(out) >= MAX_NEW_TEMPLATES:
            break
    if not out:
        out.append(Finding("logs.template", "logs.template.new", component, Severity.OK,
                           "no error template outside the baseline", observed=0, unit="lines",
                           evidence={"baseline": baseline_path}))
    return out

