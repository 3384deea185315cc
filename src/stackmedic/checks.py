"""The check registry: what each component kind contributes, validated on registration.

A component kind is a `Probe`: a pydantic model for its stack-file entry, named
*collectors* that gather facts (JSON-able dicts, with bounded time and size), and
*rules* that turn one collector's facts plus thresholds into findings. Collectors
don't decide, rules don't collect. A rule declares the symptom ids it may emit and
their default thresholds; both are checked here, at import time, so a typo fails
loudly when the probe loads rather than in the middle of an incident.

    probe = Probe("http", HttpComponent, description="an HTTP endpoint")

    @probe.collector("request", timeout=5.0)
    async def request(component: HttpComponent, ctx: CollectContext) -> Facts | None: ...

    @probe.rule("http.status", uses="request", symptoms=["http.status.error"])
    def status(facts: Facts, ctx: RuleContext) -> Iterable[Finding]: ...

Probe modules under `stackmedic.probes` load automatically; third-party ones load
from the `stackmedic.probes` entry-point group (set STACKMEDIC_NO_PLUGINS=1 to skip).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import pkgutil
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from stackmedic.errors import RegistrationError, StackmedicError
from stackmedic.findings import Finding, Severity
from stackmedic.symptoms import require
from stackmedic.thresholds import Threshold, Thresholds

if TYPE_CHECKING:
    from stackmedic.config import ComponentBase

__all__ = [
    "CollectContext",
    "CollectorSpec",
    "Facts",
    "Probe",
    "RuleContext",
    "RuleSpec",
    "all_probes",
    "get_probe",
]

Facts: TypeAlias = dict[str, Any]
Collector: TypeAlias = Callable[[Any, "CollectContext"], "Facts | Awaitable[Facts | None] | None"]
Rule: TypeAlias = Callable[[Facts, "RuleContext"], Iterable[Finding]]
Cost = Literal["cheap", "moderate", "expensive"]


class Resources:
    """Things collectors of one run share (HTTP clients, pools), closed at the end."""

    def __init__(self) -> None:
        self._items: dict[Any, tuple[Any, Callable[[Any], Any] | None]] = {}

    def get(self, key: Any, factory: Callable[[], Any],
            close: Callable[[Any], Any] | None = None) -> Any:
        """The shared object for `key`, created by `factory` on first use."""
        if key not in self._items:
            self._items[key] = (factory(), close)
        return self._items[key][0]

    async def aclose(self) -> None:
        items, self._items = self._items, {}
        for value, close in items.values():
            if close is not None:
                result = close(value)
                if inspect.isawaitable(result):
                    await result


@dataclass
class CollectContext:
    """What a collector knows about its run: who it is for and how long it has."""

    component: str
    deadline: float
    resources: Resources = field(default_factory=Resources)

    def remaining(self) -> float:
        """Seconds left before this collector's deadline (never negative)."""
        return max(0.0, self.deadline - time.monotonic())


@dataclass
class RuleContext:
    """What a rule needs to phrase findings: component, thresholds, its declared ids."""

    check: str
    component: str
    config: ComponentBase
    thresholds: Thresholds
    symptoms: frozenset[str]
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def threshold(self, symptom: str) -> Threshold:
        return self.thresholds.get(symptom, self.component)

    def finding(self, symptom: str, severity: Severity, summary: str, **fields: Any) -> Finding:
        """A finding of this rule about this component; the symptom must be declared."""
        if symptom not in self.symptoms:
            raise RegistrationError(self.check, f"emitted undeclared symptom {symptom!r}")
        return Finding(check=self.check, symptom=symptom, component=self.component,
                       severity=severity, summary=summary, **fields)

    def judge(self, symptom: str, observed: float, summary: str, **fields: Any) -> Finding:
        """A finding whose severity comes from comparing `observed` with the threshold."""
        threshold = self.threshold(symptom)
        severity = threshold.classify(observed)
        fields.setdefault("unit", threshold.unit or None)
        return self.finding(symptom, severity, summary, observed=observed,
                            threshold=threshold.level_for(severity), **fields)


@dataclass(frozen=True)
class CollectorSpec:
    """A named fact-gatherer of one kind; sync functions run in a thread."""

    kind: str
    name: str
    func: Collector
    timeout: float
    description: str

    @property
    def id(self) -> str:
        return f"{self.kind}.{self.name}"

    @property
    def is_async(self) -> bool:
        return asyncio.iscoroutinefunction(self.func)


@dataclass(frozen=True)
class RuleSpec:
    """A named verdict over one collector's facts, with its symptoms and thresholds."""

    id: str
    kind: str
    uses: str
    func: Rule
    symptoms: tuple[str, ...]
    thresholds: dict[str, Threshold]
    description: str
    cost: Cost


class Probe:
    """Everything one component kind contributes to the doctor."""

    def __init__(self, kind: str, config: type[ComponentBase], *, description: str,
                 default_ports: tuple[int, ...] = (),
                 discover: Callable[[str, int], dict[str, Any]] | None = None) -> None:
        """`default_ports` and `discover(host, port) -> spec` let autodiscovery make a
        component of this kind for a local port that answers."""
        self.kind = kind
        self.config = config
        self.description = description
        self.default_ports = default_ports
        self.discover = discover
        self.collectors: dict[str, CollectorSpec] = {}
        self.rules: list[RuleSpec] = []
        _register(self)

    def collector(self, name: str, *, timeout: float = 5.0,
                  description: str = "") -> Callable[[Collector], Collector]:
        """Register a collector `(component, ctx) -> facts | None` (None: not applicable)."""

        def decorate(func: Collector) -> Collector:
            cid = f"{self.kind}.{name}"
            _require_arity(cid, func, 2)
            if name in self.collectors:
                raise RegistrationError(cid, "collector registered twice")
            self.collectors[name] = CollectorSpec(self.kind, name, func, timeout,
                                                  description or _first_line(func))
            return func

        return decorate

    def rule(self, check_id: str, *, uses: str, symptoms: Iterable[str],
             thresholds: dict[str, Threshold] | None = None, description: str = "",
             cost: Cost = "cheap") -> Callable[[Rule], Rule]:
        """Register a rule `(facts, ctx) -> findings` over the facts of collector `uses`."""

        def decorate(func: Rule) -> Rule:
            if not check_id.startswith(self.kind + "."):
                raise RegistrationError(check_id, f"check ids of kind {self.kind!r} must "
                                        f"start with {self.kind + '.'!r}")
            if uses not in self.collectors:
                raise RegistrationError(check_id, f"uses unknown collector {uses!r}")
            declared = tuple(symptoms)
            if not declared:
                raise RegistrationError(check_id, "declares no symptom ids")
            for symptom in declared:
                try:
                    require(symptom)
                except StackmedicError as err:
                    raise RegistrationError(check_id, str(err)) from None
            for symptom in thresholds or {}:
                if symptom not in declared:
                    raise RegistrationError(check_id, f"threshold for undeclared {symptom!r}")
            if any(r.id == check_id for r in self.rules):
                raise RegistrationError(check_id, "rule registered twice")
            _require_arity(check_id, func, 2)
            self.rules.append(RuleSpec(check_id, self.kind, uses, func, declared,
                                       dict(thresholds or {}), description or _first_line(func),
                                       cost))
            return func

        return decorate


_PROBES: dict[str, Probe] = {}
_loaded = False


def _register(probe: Probe) -> None:
    if probe.kind in _PROBES:
        raise RegistrationError(probe.kind, "component kind registered twice")
    _PROBES[probe.kind] = probe


def _require_arity(check_id: str, func: Callable[..., Any], count: int) -> None:
    params = [p for p in inspect.signature(func).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) != count:
        raise RegistrationError(check_id, f"{func.__qualname__} must take exactly {count} "
                                f"positional parameters, takes {len(params)}")


def _first_line(func: Callable[..., Any]) -> str:
    return (inspect.getdoc(func) or "").split("\n", 1)[0]


def load_probes() -> None:
    """Import every built-in probe module, then entry-point plugins (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import stackmedic.probes as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    if os.environ.get("STACKMEDIC_NO_PLUGINS"):
        return
    from importlib.metadata import entry_points

    for entry in entry_points(group="stackmedic.probes"):
        entry.load()


def all_probes() -> dict[str, Probe]:
    """Component kind → probe, for every loaded kind."""
    load_probes()
    return dict(_PROBES)


def get_probe(kind: str) -> Probe:
    load_probes()
    return _PROBES[kind]


def default_thresholds() -> dict[str, Threshold]:
    """Every rule's declared default thresholds, keyed by symptom id, plus those of the
    log checks (which apply to any component with `logs:`)."""
    from stackmedic.logs.defaults import DEFAULT_THRESHOLDS as LOG_THRESHOLDS

    return {**LOG_THRESHOLDS,
            **{symptom: threshold for probe in all_probes().values() for rule in probe.rules
               for symptom, threshold in rule.thresholds.items()}}
