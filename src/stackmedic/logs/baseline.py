"""Template baselines: the error-level templates a service normally prints.

`templates --save-baseline FILE` stores the mined templates; a later scan mines
again and reports error-level templates absent from the baseline as
`logs.template.new`. Templates are compared by text, which the miner makes stable
for a given message format.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path

from stackmedic.logs.mask import WILDCARD
from stackmedic.logs.miner import MinedTemplates
from stackmedic.redact import redact_text

__all__ = ["load_baseline", "redact_template", "save_baseline"]

VERSION = 1


def redact_template(text: str) -> str:
    """A template with the secrets it kept as constants masked (a password or token
    that every line of a template repeats is not a parameter to the miner). Only the
    text between wildcards is redacted, so `password=<*>` stays as mined."""
    return WILDCARD.join(redact_text(part) for part in text.split(WILDCARD))


def save_baseline(path: str | os.PathLike[str], mined: MinedTemplates,
                  error_ids: Collection[int] = ()) -> None:
    """Write every template with its count and whether any of its lines was an error."""
    doc = {"version": VERSION, "templates": [
        {"template": redact_template(t.text), "count": t.count, "error": t.id in error_ids}
        for t in mined.templates]}
    Path(path).write_text(json.dumps(doc, indent=1), encoding="utf-8")


def load_baseline(path: str | os.PathLike[str]) -> set[str]:
    """The template texts of a saved baseline; ValueError if it is not one."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return {str(entry["template"]) for entry in doc["templates"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a template baseline ({err})") from None
