"""The runner: collect concurrently under deadlines, evaluate rules, correlate.

Every collector runs as its own asyncio task (sync ones in a daemon thread, so a
wedged driver can neither block the loop nor hold the process open at exit) under
min(its timeout, the run's deadline). A collector that fails or times out yields one
`unknown` finding naming why; a rule that raises does the same. The run always
completes and returns a `Run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stackmedic import redact
from stackmedic.checks import (
    CollectContext,
    CollectorSpec,
    Facts,
    Resources,
    RuleContext,
    all_probes,
    default_thresholds,
)
from stackmedic.config import ComponentBase, Stack
from stackmedic.correlate import correlate
from stackmedic.findings import Finding, Severity, overall_status, sort_key
from stackmedic.history import History
from stackmedic.runbooks import attach_remedy
from stackmedic.thresholds import Thresholds

__all__ = ["DEFAULT_DEADLINE", "Run", "run_doctor", "run_stack"]

DEFAULT_DEADLINE = 10.0
_FAILED = "stackmedic.check.failed"
# Leave the runner this much of the deadline to evaluate, correlate and render.
_DEADLINE_MARGIN = 0.15


@dataclass
class Run:
    """The result of one doctor run: findings ready for rendering."""

    stack: str
    started_at: datetime
    duration_ms: int
    components: dict[str, ComponentBase]
    findings: list[Finding]
    facts: dict[str, dict[str, Facts]] = field(default_factory=dict)
    thresholds: Thresholds = field(default_factory=lambda: Thresholds(default_thresholds()))

    @property
    def status(self) -> Severity:
        """Worst finding; info counts as ok, and a run that checked nothing is unknown."""
        if not self.findings:
            return Severity.UNKNOWN
        worst = overall_status(self.findings)
        return Severity.OK if worst is Severity.INFO else worst

    @property
    def exit_code(self) -> int:
        return self.status.exit_code


Progress = Callable[[int, int], None]


def run_doctor(stack: Stack, *, deadline: float = DEFAULT_DEADLINE,
               progress: Progress | None = None, history: History | None = None) -> Run:
    """Run every check of `stack` and return the correlated findings (blocking).

    With a `history`, checks that keep counters compare them with the previous run's
    (and the history is saved for the next one).
    """
    return asyncio.run(run_stack(stack, deadline=deadline, progress=progress,
                                 history=history))


async def run_stack(stack: Stack, *, deadline: float = DEFAULT_DEADLINE,
                    progress: Progress | None = None, history: History | None = None) -> Run:
    """Async form of `run_doctor`, for callers that already run an event loop."""
    started_at = datetime.now(UTC)
    start = time.monotonic()
    redact.register_environment_secrets()
    hard_deadline = start + max(0.1, deadline - _DEADLINE_MARGIN)
    thresholds = Thresholds(default_thresholds(), stack.thresholds, stack.component_thresholds())
    probes = all_probes()
    resources = Resources()

    jobs: list[tuple[str, ComponentBase, CollectorSpec]] = [
        (name, component, spec)
        for name, component in stack.components.items()
        for spec in probes[component.kind].collectors.values()
    ]
    done = 0

    async def one(name: str, component: ComponentBase, spec: CollectorSpec) -> list[Finding]:
        nonlocal done
        try:
            return await _collect_and_evaluate(name, component, spec, thresholds, resources,
                                               hard_deadline, facts, history)
        finally:
            done += 1
            if progress is not None:
                progress(done, len(jobs))

    facts: dict[str, dict[str, Facts]] = {}
    log_jobs = [_scan_logs(name, component, thresholds, hard_deadline)
                for name, component in stack.components.items() if component.logs]
    try:
        batches = await asyncio.gather(*(one(*job) for job in jobs), *log_jobs)
    finally:
        await resources.aclose()
    if history is not None:
        history.save()
    findings = [attach_remedy(f) for batch in batches for f in batch]
    findings = sorted(correlate(findings, stack.components), key=sort_key)
    duration_ms = int((time.monotonic() - start) * 1000)
    return Run(stack.name, started_at, duration_ms, stack.components, findings, facts, thresholds)


async def _collect_and_evaluate(
    name: str, component: ComponentBase, spec: CollectorSpec, thresholds: Thresholds,
    resources: Resources, hard_deadline: float, facts_out: dict[str, dict[str, Facts]],
    history: History | None,
) -> list[Finding]:
    timeout = min(component.timeout or spec.timeout, max(0.0, hard_deadline - time.monotonic()))
    ctx = CollectContext(component=name, deadline=time.monotonic() + timeout,
                         resources=resources)
    try:
        if spec.is_async:
            facts = await _abandon_after(spec.func(component, ctx), timeout)
        else:
            facts = await asyncio.wait_for(_in_daemon_thread(spec.func, component, ctx), timeout)
    except TimeoutError:
        return [_failed(name, spec, f"timed out after {timeout:.1f}s",
                        {"timeout_s": round(timeout, 3)})]
    except Exception as err:  # isolate failures: one probe never ends the run
        return [_failed(name, spec, f"failed: {type(err).__name__}: {err}",
                        {"error": type(err).__name__})]
    if facts is None:
        return []
    if history is not None:
        history.exchange(name, spec.name, facts, datetime.now(UTC))
    facts_out.setdefault(name, {})[spec.name] = facts
    return evaluate(name, component, spec.name, facts, thresholds)


async def _scan_logs(name: str, component: ComponentBase, thresholds: Thresholds,
                     hard_deadline: float) -> list[Finding]:
    """The log checks (signatures, spikes, N+1, new templates) over a component's `logs:`."""
    from stackmedic.logs import LogOptions, logs_findings

    timeout = max(0.0, hard_deadline - time.monotonic())
    options = LogOptions(thresholds=thresholds, packs=list(component.log_packs),
                         baseline=component.log_baseline)
    try:
        return list(await asyncio.wait_for(
            _in_daemon_thread(logs_findings, component.logs, name, options), timeout))
    except TimeoutError:
        return [_unknown("logs.scan", name, f"log scan of {len(component.logs)} path(s) timed "
                         f"out after {timeout:.1f}s", {"paths": component.logs[:10]},
                         "the logs are larger than the run's deadline allows; run "
                         "`stackmedic logs scan` on them directly")]
    except Exception as err:
        return [_unknown("logs.scan", name, f"log scan failed: {type(err).__name__}: {err}",
                         {"error": type(err).__name__, "paths": component.logs[:10]})]


def evaluate(name: str, component: ComponentBase, collector: str, facts: Facts,
             thresholds: Thresholds) -> list[Finding]:
    """Apply every rule of the component's kind that reads `collector`'s facts."""
    probe = all_probes()[component.kind]
    findings: list[Finding] = []
    now = datetime.now(UTC)
    for rule in probe.rules:
        if rule.uses != collector:
            continue
        ctx = RuleContext(rule.id, name, component, thresholds, frozenset(rule.symptoms), now)
        try:
            findings.extend(rule.func(facts, ctx))
        except Exception as err:
            findings.append(_unknown(rule.id, name,
                                     f"rule {rule.id} failed: {type(err).__name__}: {err}",
                                     {"error": type(err).__name__}))
    return findings


def _unknown(check: str, component: str, summary: str, evidence: dict[str, Any],
             cause: str | None = None) -> Finding:
    """The finding of a check that could not run: unknown, never ok."""
    return Finding(check=check, symptom=_FAILED, component=component,
                   severity=Severity.UNKNOWN, summary=summary, evidence=evidence, cause=cause)


def _failed(name: str, spec: CollectorSpec, why: str, evidence: dict[str, Any]) -> Finding:
    return _unknown(spec.id, name, f"{spec.id} {why}", evidence,
                    "the check could not gather its facts, so its verdict is unknown")


async def _abandon_after(coro: Any, timeout: float) -> Any:
    """Await `coro` for at most `timeout` seconds. Unlike `wait_for`, a collector that
    is slow to honour cancellation cannot hold the run past its deadline."""
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        raise TimeoutError
    return task.result()


async def _in_daemon_thread(func: Callable[..., Any], *args: Any) -> Any:
    """Run blocking `func` in a daemon thread; the await can be cancelled, the thread
    is simply abandoned (and cannot keep the process alive at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def target() -> None:
        try:
            outcome = (True, func(*args))
        except BaseException as err:  # delivered to the awaiting task
            outcome = (False, err)
        with contextlib.suppress(RuntimeError):  # the run ended: nobody is waiting
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=target, daemon=True, name="stackmedic-collector").start()
    return await future
