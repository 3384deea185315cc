"""Payload checks of the integrity scanner that run in Python: decoding stored JSON,
reading a timestamp kept inside a payload, and a JSON Schema subset (`type`,
`required`, `properties`, `enum`, `items`) without a dependency."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ["decode", "payload_time", "schema_errors"]


def decode(data: Any) -> tuple[Any, str | None]:
    if isinstance(data, dict | list):
        return data, None
    try:
        raw = bytes(data).decode("utf-8") if isinstance(data, bytes | memoryview) else data
        return json.loads(raw), None
    except (ValueError, TypeError) as err:
        return None, f"payload does not decode: {str(err)[:120]}"


def payload_time(value: Any, path: tuple[str, ...]) -> datetime | None:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.utcoffset() is None else when


_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    "integer": int, "number": (int, float)}


def schema_errors(schema: Mapping[str, Any], value: Any, path: str) -> list[str]:
    """Violations of the supported JSON Schema subset (type, required, properties,
    enum, items); booleans are not integers, as in JSON Schema."""
    expected = schema.get("type")
    if isinstance(expected, str) and expected in _TYPES and (
            not isinstance(value, _TYPES[expected])
            or (isinstance(value, bool) and expected in ("integer", "number"))):
        return [f"{path}: expected {expected}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} not in {schema['enum']!r}"]
    errors: list[str] = []
    if isinstance(value, dict):
        errors += [f"{path}: missing required {key!r}" for key in schema.get("required", ())
                   if key not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors += schema_errors(sub, value[key], f"{path}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{path}[{i}]")
    return errors

