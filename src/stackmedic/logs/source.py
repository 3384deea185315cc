"""From paths to records: expand rotated sets, detect each file's layout, join lines.

The one entry point the scanner, the miner command and the doctor share, so they
agree on what a record, a line number and a level are.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from stackmedic.logs.formats import PLAIN, Layout, Record, detect, records
from stackmedic.logs.miner import MinedTemplates, TemplateMiner
from stackmedic.logs.readers import (
    ARCHIVE_ERRORS,
    ReadStats,
    expand,
    open_binary,
    read_chunks,
    read_lines,
)

__all__ = ["SAMPLE_LINES", "detect_file", "iter_records", "mine_paths"]

SAMPLE_LINES = 200
"""Lines of each file sampled to detect its header layout."""


def detect_file(path: str | os.PathLike[str]) -> Layout:
    """The header layout of one file, from its first lines (plain if unreadable)."""
    sample = itertools.islice(read_lines([path], ReadStats()), SAMPLE_LINES)
    return detect(text for _, _, text in sample)


def iter_records(paths: Iterable[str | os.PathLike[str]], stats: ReadStats | None = None, *,
                 rotated: bool = True, per_line: bool = False, layout: Layout | None = None,
                 budget: int | None = None) -> Iterator[Record]:
    """Records of every file (rotated siblings first, oldest first). `per_line`
    makes every physical line one record (its header parsed when it has one), as
    the template miner's per-line output needs. `budget` limits reading to about
    that many of the newest bytes (whole older files are skipped first)."""
    stats = stats if stats is not None else ReadStats()
    for path, start in _within_budget(expand(paths, rotated=rotated), budget):
        chosen = layout or detect_file(path)
        lines = read_lines([path], stats, start=start)
        if per_line:
            yield from _per_line(lines, chosen)
        else:
            yield from records(lines, chosen)


def _within_budget(paths: list[Path], budget: int | None) -> list[tuple[Path, int]]:
    """`(path, start offset)` for the newest `budget` bytes of `paths` (oldest first)."""
    if budget is None:
        return [(p, 0) for p in paths]
    out: list[tuple[Path, int]] = []
    for path in reversed(paths):
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        if budget <= 0:
            break
        seekable = path.suffix not in (".gz", ".bz2", ".xz")
        if size > budget and seekable:
            out.append((path, size - budget))
        elif size <= budget:
            out.append((path, 0))
        budget -= size
    return out[::-1]


def _per_line(lines: Iterable[tuple[str, int, str]], layout: Layout) -> Iterator[Record]:
    for path, number, text in lines:
        record = None if layout is PLAIN else layout.parse(text)
        if record is None:
            record = Record(path, number, text, text)
        record.path, record.line = path, number
        yield record



def mine_paths(paths: Iterable[str | os.PathLike[str]], stats: ReadStats | None = None, *,
               per_line: bool = False, rotated: bool = True) -> tuple[MinedTemplates, set[int]]:
    """Templates of the messages in `paths`, and the ids of templates that had an
    error-level record. With `per_line`, files without a header layout (every line is
    a message) take the miner's fast path; the others are parsed record by record."""
    stats = stats if stats is not None else ReadStats()
    miner = TemplateMiner()
    error_lines: list[int] = []
    count = 0
    for path in expand(paths, rotated=rotated):
        if not path.is_file():
            stats.unreadable.append(str(path))
            stats.warn(f"{path}: no such file")
            continue
        layout = detect_file(path)
        if layout is PLAIN and per_line:
            try:
                with open_binary(path) as stream:
                    stats.files += 1
                    for chunk in read_chunks(stream, 1 << 20):
                        stats.bytes += len(chunk)
                        count += miner.add_lines(chunk)
            except ARCHIVE_ERRORS as err:
                stats.truncated_files.append(str(path))
                stats.warn(f"{path}: archive truncated or corrupt, stopped: {err}")
            continue
        for record in iter_records([path], stats, rotated=False, per_line=per_line,
                                   layout=layout):
            miner.add(record.message if per_line else record.message.split("\n", 1)[0])
            if record.is_error:
                error_lines.append(count)
            count += 1
    stats.lines = max(stats.lines, count)
    mined = miner.result()
    return mined, {mined.assignments[i] for i in error_lines}
