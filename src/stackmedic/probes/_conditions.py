"""A small Gatus-style condition language over one recorded HTTP response.

    [STATUS] == 200              [RESPONSE_TIME] < 500          (milliseconds)
    [BODY].data.status == "ok"   [BODY].items[0].id != 0        len([BODY].items) > 0
    has([BODY].errors) == false  [BODY].name == pat(api-*)      [STATUS] == any(200, 204)
    [CERTIFICATE_EXPIRATION] > 240h                             (durations: ms s m h d)
    [CONNECTED] == true

Conditions are parsed when the stack file is validated (a typo fails there, naming
the condition) and evaluated by rules against the facts a collector recorded:
`{"status", "response_time_ms", "body", "certificate_expiration_ms", "connected"}`.
Each result names the condition, whether it held, and the actual value.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Condition", "ConditionError", "evaluate", "parse"]

_PLACEHOLDERS = {"STATUS": "status", "RESPONSE_TIME": "response_time_ms", "BODY": "body",
                 "CERTIFICATE_EXPIRATION": "certificate_expiration_ms",
                 "CONNECTED": "connected"}
_SHAPE = re.compile(r"^\s*(?P<left>.+?)\s*(?P<op>==|!=|<=|>=|<|>)\s*(?P<right>.+?)\s*$")
_REF = re.compile(r"^\[(?P<name>[A-Z_]+)\](?P<path>.*)$")
_FUNC = re.compile(r"^(?P<func>len|has)\((?P<arg>.+)\)$")
_PATH_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_MAX_SHOWN = 200
_OPTION = re.compile(r"\"[^\"]*\"|'[^']*'|[^,\s][^,]*")  # any() options; commas in quotes


class ConditionError(ValueError):
    """A condition that does not parse (the message names it)."""


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


@dataclass(frozen=True)
class Condition:
    """One parsed `left OP right` condition."""

    text: str
    left: str
    op: str
    right: str


def parse(text: str) -> Condition:
    """Parse a condition; ConditionError names what is wrong with it."""
    match = _SHAPE.match(text)
    if not match:
        raise ConditionError(f"condition {text!r}: expected `[PLACEHOLDER] OP value` "
                             "with OP one of == != < <= > >=")
    left, op, right = match["left"], match["op"], match["right"]
    for side in (left, right):
        inner = _FUNC.match(side)
        ref = _REF.match(inner["arg"] if inner else side)
        if ref and ref["name"] not in _PLACEHOLDERS:
            raise ConditionError(f"condition {text!r}: unknown placeholder [{ref['name']}] "
                                 f"(known: {', '.join(sorted(_PLACEHOLDERS))})")
        if ref and ref["path"] and (ref["name"] != "BODY" or _bad_path(ref["path"])):
            raise ConditionError(f"condition {text!r}: bad path {ref['path']!r}")
    if op not in ("==", "!=") and re.match(r"^(pat|any)\(.*\)$", right):
        raise ConditionError(f"condition {text!r}: pat()/any() only work with == or !=")
    if not (_REF.match(left) or _FUNC.match(left)):
        raise ConditionError(f"condition {text!r}: the left side must be a [PLACEHOLDER] "
                             "or len()/has() of one")
    return Condition(text, left, op, right)


def _bad_path(path: str) -> bool:
    return _PATH_STEP.sub("", path) != ""


def evaluate(condition: Condition, facts: dict[str, Any]) -> dict[str, Any]:
    """{condition, ok, actual, expected} for `condition` against recorded facts."""
    actual = _resolve(condition.left, facts)
    right = condition.right
    ok: bool
    if right.startswith("pat(") and right.endswith(")"):
        expected: Any = right
        matched = fnmatch.fnmatchcase(_text(actual), right[4:-1])
        ok = _equality(condition.op, matched, condition.text)
    elif right.startswith("any(") and right.endswith(")"):
        expected = right
        options = [_resolve(part.strip(), facts) for part in _OPTION.findall(right[4:-1])]
        ok = _equality(condition.op, any(_equal(actual, o) for o in options), condition.text)
    else:
        expected = _resolve(right, facts)
        ok = _compare(actual, condition.op, expected)
    return {"condition": condition.text, "ok": ok, "actual": _shown(actual),
            "expected": _shown(expected)}


def _equality(op: str, matched: bool, text: str) -> bool:
    if op not in ("==", "!="):
        raise ConditionError(f"condition {text!r}: pat()/any() only work with == or !=")
    return matched if op == "==" else not matched


def _resolve(token: str, facts: dict[str, Any]) -> Any:
    """The value of a placeholder, a len()/has() call or a literal."""
    func = _FUNC.match(token)
    if func:
        value = _resolve(func["arg"], facts)
        if func["func"] == "has":
            return value is not MISSING
        return len(value) if isinstance(value, str | list | dict) else MISSING
    ref = _REF.match(token)
    if ref and ref["name"] in _PLACEHOLDERS:
        value = facts.get(_PLACEHOLDERS[ref["name"]], MISSING)
        if value is None:
            return MISSING
        return _walk(value, ref["path"]) if ref["path"] else value
    return _literal(token)


def _walk(body: Any, path: str) -> Any:
    try:
        node = json.loads(body) if isinstance(body, str | bytes) else body
    except (ValueError, RecursionError):  # RecursionError: `[[[[…` nested past the stack
        return MISSING
    for key, index in _PATH_STEP.findall(path):
        if index and isinstance(node, list) and int(index) < len(node):
            node = node[int(index)]
        elif key and isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return MISSING
    return node


def _literal(token: str) -> Any:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        return token[1:-1]
    lowered = token.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if _DURATION.match(token):
        return sum(float(n) * _UNIT_MS[u] for n, u in _DURATION_PART.findall(token))
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        return token  # Gatus accepts bare words: `[BODY].status == UP`


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is MISSING or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _equal(left: Any, right: Any) -> bool:
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return a == b
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    return left is not MISSING and _text(left) == _text(right)


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    a, b = _number(left), _number(right)
    if a is None or b is None:
        return False  # ordering needs two numbers; a missing value never satisfies it
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    return json.dumps(value) if isinstance(value, dict | list | bool) else str(value)


def _shown(value: Any) -> Any:
    """A JSON-able, bounded rendering of a value for evidence."""
    if value is MISSING:
        return "<missing>"
    if isinstance(value, str | dict | list):
        text = value if isinstance(value, str) else json.dumps(value)
        return value if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"
    return value
