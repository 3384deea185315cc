"""Correlation: link findings along `depends_on` edges and mark probable root causes.

The table of which symptom can explain which lives in `correlations.yaml`; this
module only walks the dependency graph. A problem finding G on a dependency of C
explains a problem finding F on C when the table lists F's symptom as an effect of
G's. Findings that explain something and are explained by nothing are root causes.

Rows marked `within: component` link findings on the same component instead: a
transaction left open for hours explains the dead tuples vacuum cannot remove on that
same server. A row may also `match` evidence between the two findings (the head of a
lock queue is the session another finding names: `{head_pid: pid}`) and require
evidence of the cause (`requires: [xmin_age]`: the session holds a snapshot), or apply
only to some effects (`when: {error_kind: [timeout]}`, `unless: {signature: [...]}`).

A finding about one dependency in particular (an open circuit breaker guarding the
payment service) names it in `evidence["dependency"]`; it is then explained only by
that component and what it depends on, not by every dependency of its component.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from stackmedic.findings import Finding

__all__ = ["Row", "correlate", "rows"]


@dataclass(frozen=True)
class Row:
    """One row of correlations.yaml: which causes explain which effects, and where."""

    effects: frozenset[str]
    causes: frozenset[str]
    within: str = "dependencies"  # or "component": the cause is on the same component
    match: tuple[tuple[str, str], ...] = ()  # (effect evidence key, cause evidence key)
    requires: tuple[str, ...] = ()  # evidence keys the cause must have (not None)
    when: tuple[tuple[str, frozenset[Any]], ...] = ()  # effect evidence key in values
    unless: tuple[tuple[str, frozenset[Any]], ...] = ()  # ... or not in them

    def applies(self, effect: Finding) -> bool:
        """Whether this row may explain `effect` at all (its `when` / `unless`)."""
        return all(effect.evidence.get(k) in v for k, v in self.when) and \
            not any(effect.evidence.get(k) in v for k, v in self.unless)

    def links(self, effect: Finding, cause: Finding) -> bool:
        """Whether `cause` explains `effect` by this row (where they are aside)."""
        return (cause.symptom in self.causes
                and all(effect.evidence.get(e) is not None
                        and effect.evidence.get(e) == cause.evidence.get(c)
                        for e, c in self.match)
                and all(cause.evidence.get(key) is not None for key in self.requires))


@cache
def rows() -> tuple[Row, ...]:
    """The correlation table, as written in correlations.yaml."""
    text = files("stackmedic").joinpath("correlations.yaml").read_text("utf-8")
    def values(key: str, row: dict[str, Any]) -> tuple[tuple[str, frozenset[Any]], ...]:
        return tuple((k, frozenset(v)) for k, v in (row.get(key) or {}).items())

    return tuple(Row(frozenset(row["effects"]), frozenset(row["causes"]),
                     row.get("within", "dependencies"),
                     tuple((row.get("match") or {}).items()), tuple(row.get("requires", ())),
                     values("when", row), values("unless", row))
                 for row in yaml.safe_load(text))


def dependencies(components: Mapping[str, Any]) -> dict[str, list[str]]:
    """Component → every component it depends on, transitively, nearest first."""
    result: dict[str, list[str]] = {}
    for name in components:
        seen: list[str] = []
        frontier = list(getattr(components[name], "depends_on", []))
        while frontier:
            dep = frontier.pop(0)
            if dep in seen or dep == name or dep not in components:
                continue
            seen.append(dep)
            frontier.extend(getattr(components[dep], "depends_on", []))
        result[name] = seen
    return result


def correlate(findings: Sequence[Finding], components: Mapping[str, Any]) -> list[Finding]:
    """Return the findings with `explains` / `explained_by` / `root_cause` filled in."""
    by_effect = _rows_by_effect()
    deps = dependencies(components)
    by_component: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        if finding.is_problem:
            by_component[finding.component].append(finding)
    explains: dict[str, list[str]] = defaultdict(list)
    explained_by: dict[str, list[str]] = defaultdict(list)
    for effect in (f for f in findings if f.is_problem):
        for row in (r for r in by_effect.get(effect.symptom, []) if r.applies(effect)):
            where = _suspects(effect, deps) if row.within == "dependencies" \
                else [effect.component]
            for cause in (c for component in where for c in by_component.get(component, [])):
                if cause.fingerprint != effect.fingerprint and row.links(effect, cause):
                    explains[cause.fingerprint].append(effect.fingerprint)
                    explained_by[effect.fingerprint].append(cause.fingerprint)
    out = []
    for finding in findings:
        fp = finding.fingerprint
        if fp in explains or fp in explained_by:
            finding = replace(
                finding,
                explains=tuple(dict.fromkeys(explains.get(fp, []))),
                explained_by=tuple(dict.fromkeys(explained_by.get(fp, []))),
                root_cause=fp in explains and fp not in explained_by,
            )
        out.append(finding)
    return out


@cache
def _rows_by_effect() -> dict[str, list[Row]]:
    """The rows that may explain each effect symptom, built once."""
    by_effect: dict[str, list[Row]] = defaultdict(list)
    for row in rows():
        for symptom in row.effects:
            by_effect[symptom].append(row)
    return by_effect


def _suspects(effect: Finding, deps: Mapping[str, list[str]]) -> list[str]:
    """The components whose findings may explain `effect`: its component's dependencies,
    or only the one it names (and what that one depends on)."""
    every = deps.get(effect.component, [])
    named = effect.evidence.get("dependency")
    if named in every:
        return [named, *deps.get(named, [])]
    return every
