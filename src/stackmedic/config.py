"""The stack file (`stackmedic.yaml`): load, interpolate, validate, explain errors.

Errors are one line each naming the file, line and key, e.g.
`stackmedic.yaml:12: components.db.kind: unknown kind 'postgress' (did you mean 'postgres'?)`.
Validation carries on past a mistake so one run reports every independent one: broken
YAML stops it, an error under a key that already failed is left out as its echo, and
an entry pydantic rejected is dropped before the checks that build on it.
`${VAR}` and `${VAR:-default}` are expanded in string values (`$$` is a literal `$`);
values that come from secret-named variables or keys are registered for redaction.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import ErrorDetails

from stackmedic import redact
from stackmedic.errors import ConfigError, ConfigErrors
from stackmedic.symptoms import catalogue

__all__ = ["ComponentBase", "Stack", "ThresholdOverride", "json_schema", "load_stack",
           "parse_stack"]

KeyPath = tuple[str | int, ...]
Model = TypeVar("Model", bound=BaseModel)


class ThresholdOverride(BaseModel):
    """Warning/critical levels for one symptom (either may be omitted)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    warning: float | None = None
    critical: float | None = None


class ComponentBase(BaseModel):
    """Fields every component has, whatever its kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str
    depends_on: list[str] = Field(default_factory=list,
                                  description="components this one needs to work")
    logs: list[str] = Field(default_factory=list, description="log files of this component")
    log_packs: list[str] = Field(default_factory=list,
                                 description="extra signature packs (YAML files) for its logs")
    log_baseline: str | None = Field(None, description="template baseline for logs.template.new")
    thresholds: dict[str, ThresholdOverride] = Field(default_factory=dict)
    timeout: float | None = Field(None, gt=0, description="seconds each collector may take")
    description: str | None = None


class StackFile(BaseModel):
    """The top level of a stack file."""

    model_config = ConfigDict(extra="forbid")
    stack: str = "stack"
    components: dict[str, dict[str, Any]] = Field(default_factory=dict)
    thresholds: dict[str, ThresholdOverride] = Field(default_factory=dict)


@dataclass
class Stack:
    """A validated stack: named components of known kinds and threshold overrides."""

    name: str
    components: dict[str, ComponentBase]
    thresholds: dict[str, dict[str, float | None]] = field(default_factory=dict)
    path: str | None = None

    def component_thresholds(self) -> dict[str, dict[str, dict[str, float | None]]]:
        return {name: {sid: t.model_dump(exclude_none=True) for sid, t in c.thresholds.items()}
                for name, c in self.components.items()}


def load_stack(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Stack:
    """Read and validate a stack file; raises ConfigError with file and line."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", path=name) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read: {err}", path=name) from None
    return parse_stack(text, name, environ)


def parse_stack(text: str, path: str = "<stack>",
                environ: Mapping[str, str] | None = None) -> Stack:
    """Validate stack-file text (see `load_stack`)."""
    env = os.environ if environ is None else environ
    lines = _Lines(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"invalid YAML: {problem}", path=path,
                          line=mark.line + 1 if mark else None) from None
    if node is None:
        raise ConfigError("the file is empty", path=path)
    data = _build(node, (), lines, env)
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", path=path, line=1)
    top = _validate(StackFile, data, (), lines)
    specs = top.components if top else {}
    components = {name: component for name, spec in specs.items()
                  if (component := _component(name, spec, lines)) is not None}
    declared = data.get("components")
    _check_references(components, set(declared) if isinstance(declared, dict) else set(), lines)
    for sid, override in (top.thresholds if top else {}).items():
        _check_threshold(sid, override, ("thresholds", sid), lines)
    lines.raise_errors()
    assert top is not None  # a file that failed validation has raised just above
    return Stack(top.stack, components,
                 {sid: t.model_dump(exclude_none=True) for sid, t in top.thresholds.items()},
                 path)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the stack file, with one branch per component kind."""
    from stackmedic.checks import all_probes

    variants = []
    for kind, probe in sorted(all_probes().items()):
        literal: Any = Literal[kind]  # a runtime-built type: mypy cannot follow it
        variants.append(create_model(f"{probe.config.__name__}", __base__=probe.config,
                                     kind=(literal, Field(..., description=probe.description))))
    union: Any = variants[0]
    for variant in variants[1:]:
        union = union | variant
    fields: dict[str, Any] = {
        "stack": (str, Field("stack", description="name of the stack")),
        "components": (dict[str, Annotated[union, Field(discriminator="kind")]],
                       Field(default_factory=dict)),
        "thresholds": (dict[str, ThresholdOverride], Field(default_factory=dict)),
    }
    top: Any = create_model("StackFile", __config__=ConfigDict(extra="forbid"), **fields)
    schema: dict[str, Any] = top.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "stackmedic stack file"
    return schema


# --- building the data with line numbers --------------------------------------------

class _Lines:
    """Remembers which line each key path came from."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: dict[KeyPath, int] = {}
        self.errors: list[ConfigError] = []
        self.failed: list[KeyPath] = []

    def at(self, keypath: KeyPath) -> int | None:
        while keypath:
            if keypath in self.lines:
                return self.lines[keypath]
            keypath = keypath[:-1]
        return self.lines.get((), None)

    def report(self, keypath: KeyPath, message: str, line: int | None = None) -> None:
        """Note an error and carry on; one at or under a key that already failed (an unset
        ${VAR}, then the empty value's wrong type) only echoes the first and is dropped."""
        if any(keypath[:len(failed)] == failed for failed in self.failed):
            return
        self.failed.append(keypath)
        key = ".".join(str(k) for k in keypath) or None
        self.errors.append(ConfigError(message, path=self.path, line=line or self.at(keypath),
                                       key=key))

    def raise_errors(self) -> None:
        """Raise what was reported, in file order: one ConfigError, or ConfigErrors."""
        errors = sorted(self.errors, key=lambda error: error.line or 0)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ConfigErrors(errors)


_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def _build(node: yaml.Node, keypath: KeyPath, lines: _Lines, env: Mapping[str, str]) -> Any:
    lines.lines.setdefault(keypath, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`; explicit keys win
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) \
                    else [value_node]
                for source in reversed(sources):
                    value = _build(source, keypath, lines, env)
                    if isinstance(value, dict):
                        merged.update(value)
                    else:
                        lines.report(keypath, "'<<' must merge a mapping")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                lines.report(keypath, "a key must be a plain value, not a list or mapping",
                             key_node.start_mark.line + 1)
                continue
            key = yaml.safe_load(yaml.serialize(key_node))
            child = (*keypath, str(key))
            if key in out:
                lines.report(child, "duplicate key", key_node.start_mark.line + 1)
                continue
            lines.lines[child] = key_node.start_mark.line + 1
            out[key] = _build(value_node, child, lines, env)
        return merged | out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*keypath, i), lines, env) for i, item in enumerate(node.value)]
    value = yaml.safe_load(yaml.serialize(node))
    if isinstance(value, str) and "$" in value:
        value = _interpolate(value, keypath, lines, env)  # pydantic coerces "5432" to int
    if isinstance(value, str) and keypath and redact.is_secret_key(str(keypath[-1])):
        redact.register_secret(value)
    if isinstance(value, str):
        redact.register_url_secrets(value)
    return value


def _interpolate(value: str, keypath: KeyPath, lines: _Lines, env: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match["name"], match["default"]
        if name in env and env[name] != "":
            result = env[name]
        elif default is not None:
            result = default
        else:
            lines.report(keypath, f"environment variable ${{{name}}} is not set "
                                  f"(set it, or write ${{{name}:-default}})")
            return ""
        if redact.is_secret_key(name):
            redact.register_secret(result)
        return result

    return _VAR.sub(substitute, value)


# --- validation --------------------------------------------------------------------

def _validate(model: type[Model], data: dict[str, Any], prefix: KeyPath,
              lines: _Lines) -> Model | None:
    """`data` as `model`, reporting every pydantic error; on failure the rejected entries
    are dropped and the rest validated again, so the checks after this still see it."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        errors = err.errors()
    for error in errors:
        loc = tuple(error["loc"])
        lines.report((*prefix, *loc), _explain(error, model, (*prefix, *loc)))
    try:
        return model.model_validate(_without(data, [tuple(e["loc"]) for e in errors]))
    except ValidationError:
        return None  # what fails now follows from what was dropped (a required key)


def _without(data: dict[str, Any], locs: list[KeyPath]) -> dict[str, Any]:
    """A copy of `data` without the entries at `locs`: the key, or the item of a mapping
    value (one bad threshold drops that threshold, not all of them)."""
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for loc in locs:
        if len(loc) > 1 and isinstance(out.get(str(loc[0])), dict):
            out[str(loc[0])].pop(str(loc[1]), None)
        elif loc:
            out.pop(str(loc[0]), None)
    return out


def _component(name: str, spec: dict[str, Any], lines: _Lines) -> ComponentBase | None:
    from stackmedic.checks import all_probes

    where: KeyPath = ("components", name)
    probes = all_probes()
    kind = spec.get("kind")
    if kind is None:
        lines.report((*where, "kind"), f"missing 'kind' (one of: {', '.join(sorted(probes))})")
        return None
    if not isinstance(kind, str) or kind not in probes:
        close = difflib.get_close_matches(str(kind), probes, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else \
            f" (known kinds: {', '.join(sorted(probes))})"
        lines.report((*where, "kind"), f"unknown kind {kind!r}{hint}")
        return None
    component: ComponentBase | None = _validate(probes[kind].config, spec, where, lines)
    for sid, override in component.thresholds.items() if component else ():
        _check_threshold(sid, override, (*where, "thresholds", sid), lines)
    return component


def _check_references(components: dict[str, ComponentBase], declared: set[str],
                      lines: _Lines) -> None:
    """Unknown, self and circular dependencies; `declared` includes invalid components."""
    for name, component in components.items():
        for i, dep in enumerate(component.depends_on):
            if dep == name:
                lines.report(("components", name, "depends_on", i),
                             "a component cannot depend on itself")
            elif dep not in declared:
                close = difflib.get_close_matches(dep, declared, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                lines.report(("components", name, "depends_on", i),
                             f"unknown component {dep!r}{hint}")
    seen: set[frozenset[str]] = set()
    for name in components:
        cycle = _cycle_from(name, components)
        if len(cycle) > 2 and frozenset(cycle) not in seen:  # a -> a is reported above
            seen.add(frozenset(cycle))
            lines.report(("components", name, "depends_on"),
                         f"depends_on goes round in a circle: {' -> '.join(cycle)} "
                         "(no root cause could be told apart)")


def _cycle_from(start: str, components: dict[str, ComponentBase]) -> list[str]:
    """A dependency path from `start` back to itself, or [] when there is none."""
    path, seen = [start], set()

    def walk(name: str) -> bool:
        for dep in components[name].depends_on:
            if dep == start:
                path.append(dep)
                return True
            if dep not in seen and dep in components:
                seen.add(dep)
                path.append(dep)
                if walk(dep):
                    return True
                path.pop()
        return False

    return path if walk(start) else []


def _check_threshold(sid: str, override: ThresholdOverride, keypath: KeyPath,
                     lines: _Lines) -> None:
    from stackmedic.checks import default_thresholds

    if sid not in catalogue():
        close = difflib.get_close_matches(sid, catalogue(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        lines.report(keypath, f"unknown symptom id {sid!r}{hint}")
        return
    default = default_thresholds().get(sid)
    if default is None:
        lines.report(keypath, f"no check judges {sid!r} against a threshold")
        return
    levels = [v for v in (override.warning, override.critical) if v is not None]
    if default.unit == "ratio" and any(2 <= v <= 100 for v in levels):  # 1.01 or 1e9 = "never"
        lines.report(keypath, "looks like a percentage: ratios are fractions "
                              "(write 0.85 for 85%)")
        return
    warning = default.warning if override.warning is None else override.warning
    critical = default.critical if override.critical is None else override.critical
    if warning is not None and critical is not None:
        below = default.direction == "below"
        if (critical > warning) if below else (critical < warning):
            lines.report(keypath, f"warning {warning:g} and critical {critical:g} are "
                                  f"swapped: for {sid} {'lower' if below else 'higher'} "
                                  f"is worse, so critical must be "
                                  f"{'below' if below else 'above'} warning")


def _explain(error: ErrorDetails, model: type[BaseModel], keypath: KeyPath) -> str:
    """One pydantic error as a short message, with a did-you-mean for an unknown key."""
    kind = error["type"]
    if kind == "extra_forbidden":
        loc = tuple(error["loc"])
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(model, loc[:-1]), n=1)
        return "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "missing":
        return "required key is missing"
    message = error["msg"][0].lower() + error["msg"][1:]
    if "input" in error and not isinstance(error["input"], dict | list) \
            and not redact.is_secret_key(str(keypath[-1]) if keypath else ""):
        message += f", got {error['input']!r}"
    return message


def _fields_at(model: type[BaseModel], loc: KeyPath) -> list[str]:
    """Field names of the model at `loc` inside `model` (through nested models, mappings,
    lists and optionals), for a did-you-mean; [] where `loc` leads to no model."""
    node: Any = model
    for part in loc:
        node = _unwrap_optional(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            fields = {f.alias or n: f for n, f in node.model_fields.items()}
            node = fields[str(part)].annotation if str(part) in fields else None
        elif get_origin(node) in (dict, list):  # dict[str, X] / list[X]: X under any key
            node = get_args(node)[-1]
        else:
            return []
    node = _unwrap_optional(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [f.alias or n for n, f in node.model_fields.items()]
    return []


def _unwrap_optional(node: Any) -> Any:
    """`X` for `X | None`; anything else unchanged."""
    args = [a for a in get_args(node) if a is not type(None)]
    return args[0] if get_origin(node) in (Union, UnionType) and len(args) == 1 else node
