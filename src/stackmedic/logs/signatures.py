"""Signature packs: YAML files naming known issues and the lines that reveal them.

    pack: mine
    signatures:
      - id: billing.gateway_down          # unique within all loaded packs
        symptom: logs.error.payment       # a logs.error.* id from the taxonomy
        severity: critical                # info | warning | critical
        description: the payment gateway refused connections
        runbook: logs.error.payment       # optional; defaults to the symptom
        patterns: ['gateway (refused|unreachable)']
        examples: ['billing: gateway refused connection']   # must match
        near_misses: ['gateway reachable again']             # must not match
        breakdown: {by: status, value: '5[0-9][0-9]'}         # optional, see below
        supersedes: [db.driver_error]        # optional: a line both match counts here only

Patterns are a portable subset of POSIX ERE, so hyperscan, RE2, Python `re` and
`grep -E` agree on every line: literals, `.`, bracket classes without negation,
`* + ? {m,n}`, alternation and groups. Validation rejects the rest when the pack
loads, naming the pack, signature and pattern.

A `breakdown` counts a signature's lines by a value inside the text its pattern
matched (the status of an HTTP 5xx line). It runs in Python on matched lines only,
so it may use any `re` syntax and every engine gives the same breakdown.

`supersedes` names broader signatures that a line matching this one should not also
be counted under ("too many clients" is a connection-pool problem, not also a generic
driver error and a failed connection): one line, one finding, the most specific. The
matched-line count is unchanged; a superseded signature counts only the lines nothing
more specific explains.
"""

from __future__ import annotations

import os
import re
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stackmedic.errors import ConfigError
from stackmedic.symptoms import catalogue

__all__ = ["Breakdown", "Pack", "Signature", "builtin_pack", "load_pack", "load_packs",
           "portable_error"]

# Constructs outside the portable subset: escapes that are classes or assertions in
# some engines only, negated classes (they would match the newline between lines),
# anchors, lookaround, flags and backreferences.
_NOT_PORTABLE = re.compile(r"\\[dDsSwWbBAZzQE0-9pPkKxuUnrtfv]|\[\^|\(\?|\^|\$|\[\[:")


def portable_error(pattern: str) -> str | None:
    """Why `pattern` is outside the portable ERE subset, or None if it is inside."""
    found = _NOT_PORTABLE.search(pattern)
    if found:
        return f"{found.group(0)!r} is not in the portable subset"
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        return f"does not compile: {err}"
    if compiled.search(""):
        return "matches the empty string (it would match every line)"
    return None


class Breakdown(BaseModel):
    """Count matched lines by the first match of `value` within the matched text."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    by: str = Field(pattern=r"^[a-z_]+$")
    value: str

    @field_validator("value")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"breakdown value {value!r} does not compile: {err}") from None
        return value


class Signature(BaseModel):
    """One known issue: the patterns that reveal it and what it means."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9_.\-]+$")
    symptom: str
    severity: Literal["info", "warning", "critical"] = "warning"
    description: str
    runbook: str | None = None
    patterns: tuple[str, ...] = Field(min_length=1)
    examples: tuple[str, ...] = ()
    near_misses: tuple[str, ...] = ()
    breakdown: Breakdown | None = None
    supersedes: tuple[str, ...] = ()

    @field_validator("symptom")
    @classmethod
    def _known_symptom(cls, value: str) -> str:
        if not value.startswith("logs.error.") or value not in catalogue():
            raise ValueError(f"symptom must be a logs.error.* id of the taxonomy, got {value!r}")
        return value

    @field_validator("patterns")
    @classmethod
    def _portable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            problem = portable_error(pattern)
            if problem:
                raise ValueError(f"pattern {pattern!r}: {problem}")
        return value

    @property
    def runbook_id(self) -> str:
        return self.runbook or self.symptom


class Pack(BaseModel):
    """A named list of signatures."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    pack: str
    description: str = ""
    signatures: tuple[Signature, ...]


def load_pack(path: str | os.PathLike[str]) -> Pack:
    """Read and validate one pack; ConfigError names the file and the problem."""
    name = os.fspath(path)
    try:
        data = yaml.safe_load(Path(name).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read signature pack: {err}", path=name) from None
    return _validate(data, name)


def _validate(data: object, name: str) -> Pack:
    try:
        return Pack.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {first['msg']}", path=name) from None


@cache
def builtin_pack() -> Pack:
    """The pack shipped with stackmedic (`logs/packs/builtin.yaml`)."""
    text = files("stackmedic.logs").joinpath("packs").joinpath("builtin.yaml").read_text("utf-8")
    return _validate(yaml.safe_load(text), "builtin.yaml")


def load_packs(paths: tuple[str, ...] | list[str] = (), *, builtin: bool = True,
               ) -> list[Signature]:
    """The built-in signatures followed by those of the packs at `paths`; ids must be
    unique across all of them."""
    packs = [builtin_pack()] if builtin else []
    packs += [load_pack(p) for p in paths]
    seen: dict[str, str] = {}
    out: list[Signature] = []
    for pack in packs:
        for signature in pack.signatures:
            if signature.id in seen:
                raise ConfigError(f"signature id {signature.id!r} is defined in both "
                                  f"{seen[signature.id]!r} and {pack.pack!r}")
            seen[signature.id] = pack.pack
            out.append(signature)
    known = set(seen) | {s.id for s in builtin_pack().signatures}
    for signature in out:
        unknown = [loser for loser in signature.supersedes if loser not in known]
        if unknown:
            raise ConfigError(f"signature {signature.id!r} ({seen[signature.id]!r}) supersedes "
                              f"unknown signature {unknown[0]!r}")
    return out
