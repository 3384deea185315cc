"""The symptom catalogue (`symptoms.yaml`): every id a finding may carry."""

from __future__ import annotations

import difflib
from functools import cache
from importlib.resources import files

import yaml

from stackmedic.errors import UnknownSymptomError

__all__ = ["catalogue", "describe", "require"]


@cache
def catalogue() -> dict[str, str]:
    """Symptom id → what detecting it rests on, in file order."""
    data = yaml.safe_load(files("stackmedic").joinpath("symptoms.yaml").read_text("utf-8"))
    return {sid: spec.get("detect", "") for group in data.values() for sid, spec in group.items()}


def groups() -> dict[str, list[str]]:
    """Group name (host, db, cache…) → its ids."""
    data = yaml.safe_load(files("stackmedic").joinpath("symptoms.yaml").read_text("utf-8"))
    return {group: list(ids) for group, ids in data.items()}


def require(symptom: str) -> str:
    """Return `symptom` if catalogued, else raise naming the closest id."""
    known = catalogue()
    if symptom not in known:
        close = difflib.get_close_matches(symptom, known, n=1)
        raise UnknownSymptomError(symptom, close[0] if close else "")
    return symptom


def describe(symptom: str) -> str:
    """The catalogue's one-line description of a symptom."""
    return catalogue()[require(symptom)]
