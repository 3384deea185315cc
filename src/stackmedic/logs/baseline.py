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

from stackmedic.logs.miner import MinedTemplates

__all__ = ["load_baseline", "save_baseline"]

VERSION = 1


def save_baseline(path: str | os.PathLike[str], mined: MinedTemplates,
                  error_ids: Collection[int] = ()) -> None:
    """Write every template with its count and whether any of its lines was an error."""
    doc = {"version": VERSION, "templates": [
        {"template": t.text, "count": t.count, "error": t.id in error_ids}
        for t in mined.templates]}
    Path(path).write_text(json.dumps(doc, indent=1), encoding="utf-8")


def load_baseline(path: str | os.PathLike[str]) -> set[str]:
    """The template texts of a saved baseline; ValueError if it is not one."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return {str(entry["template"]) for entry in doc["templates"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a template baseline ({err})") from None
