"""Template mining: group log messages by the format string that printed them.

Our own algorithm, because the library we measured does worse on both counts: on
loghub-2k (8 datasets, scored by shared/tools/loghub_eval.py) drain3 with default
settings groups at GA 0.84 / PA 0.45, this miner at GA 0.96 / PA 0.88 with no
per-dataset setting; on 1,000,000 lines it ran 10-22x faster than drain3 in the same
run (bench/bench_logs_miner.py, bench/RESULTS.md).

1. *Mask* every message (`stackmedic.logs.mask`): numbers, addresses, ids, paths…
   become `<*>` and runs of them collapse, so variable-length parameter lists share
   a template. Each distinct masked *shape* is kept once with its line count; with
   `add_lines`, lines that differ only in digits skip masking altogether.
2. *Constant words by frequency* (the insight of Brain, Yu et al. 2023): among
   same-length shapes, the words of one template occur as often as the template
   does, parameter words less often. A shape's *core* is the words sharing the
   frequency most of its words have (on a tie, the rarer: the more specific);
   shapes with the same core form a group, and every word all members share is a
   constant, even a commoner one.
3. *Split few values*: a varying position with at most `SPLIT_MAX_VALUES` distinct
   words (or the first word) is split into one template per word, so `VM Started`
   and `VM Paused` stay apart while usernames and hosts become `<*>`.
"""

from __future__ import annotations

import os
import re
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from stackmedic.logs.mask import WILDCARD, mask
from stackmedic.logs.readers import open_binary, read_chunks

__all__ = ["MinedTemplates", "Template", "TemplateMiner", "mine", "mine_file"]

CACHE_LIMIT = 200_000
"""Distinct exact messages remembered with their shape (repeats skip masking)."""
EXAMPLE_CHARS = 1000
MAX_MESSAGE = 64 * 1024
"""Bytes of one line that are masked; the rest of a giant line cannot change its shape
in any useful way and would only cost time."""
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_ZERO_RUNS = re.compile(rb"0+")

SPLIT_MAX_VALUES = 3
"""A position where the members of a group show at most this many distinct words is
split into one template per word: few values of a word are meanings, many are data.
The first word is always split (messages start with their verb or subject: `boot
(command 12)` and `halt (command 12)` are different events); the value of a
`key=value` pair is never split (it is data by construction)."""


@dataclass(frozen=True, slots=True)
class Template:
    """One mined template: `<*>` marks parameters; `count` lines matched it."""

    id: int
    text: str
    count: int
    example: str


@dataclass(frozen=True, slots=True)
class MinedTemplates:
    """The templates of a batch and, for each input line in order, its template id."""

    templates: list[Template]
    assignments: list[int]

    def per_line(self) -> Iterator[Template]:
        """The template of each input line, in input order."""
        for tid in self.assignments:
            yield self.templates[tid]


class TemplateMiner:
    """Feed messages with `add` (or raw lines with `add_lines`), then call `result()`.

    Lines are kept as one shape id each (4 bytes), so memory grows with the number of
    lines only by that, and with the number of distinct shapes."""

    def __init__(self) -> None:
        self._shape_ids: dict[str, int] = {}
        self._shapes: list[str] = []
        self._examples: list[str] = []
        self._line_shapes = array("i")
        self._exact: dict[str, int] = {}
        self._keys: dict[bytes, int] = {}
        self._runs: dict[bytes, int] = {}

    def _shape_id(self, message: str) -> int:
        shape = mask(message)
        sid = self._shape_ids.get(shape)
        if sid is None:
            sid = self._shape_ids[shape] = len(self._shapes)
            self._shapes.append(shape)
            self._examples.append(message[:EXAMPLE_CHARS])
        return sid

    def add(self, message: str) -> None:
        """Record one message (its header already removed)."""
        sid = self._exact.get(message)
        if sid is None:
            sid = self._shape_id(message)
            if len(self._exact) < CACHE_LIMIT:  # exact repeats are common in real logs
                self._exact[message] = sid
        self._line_shapes.append(sid)

    def add_many(self, messages: Iterable[str]) -> None:
        for message in messages:
            self.add(message)

    def add_lines(self, chunk: bytes) -> int:
        """Record every line of `chunk` (UTF-8 bytes, whole lines) as a message; returns
        the number of lines.

        The fast path: lines that differ only in their digits always get the same
        shape, so each line is looked up by its digits-zeroed bytes and only the first
        line of each such key is decoded and masked. Everything per line runs in C;
        Python code runs only for lines whose key is new, so chunks of about 1 MB
        (a few thousand lines) keep that share small."""
        if not chunk:
            return 0
        if chunk.endswith(b"\n"):
            chunk = chunk[:-1]
        keys = chunk.translate(_ZERO_DIGITS).split(b"\n")
        known = self._keys
        ids = list(map(known.get, keys))
        if None in ids:
            originals = chunk.split(b"\n")
            runs = self._runs
            start = 0
            while (start := _index_of_none(ids, start)) >= 0:
                key = keys[start]
                sid = known.get(key)
                if sid is None:
                    # Keys that differ only in the length of a digit run (`7` vs
                    # `1234`) share one shape; the run-collapsed key finds it unmasked.
                    collapsed = _ZERO_RUNS.sub(b"0", key)
                    sid = runs.get(collapsed)
                    if sid is None:
                        line = originals[start][:MAX_MESSAGE].decode("utf-8", "replace")
                        sid = runs[collapsed] = self._shape_id(line.rstrip("\r"))
                    known[key] = sid
                ids[start] = sid
                start += 1
        self._line_shapes.extend(ids)  # type: ignore[arg-type]  # no None is left
        return len(keys)

    def result(self) -> MinedTemplates:
        """Cluster the distinct shapes into templates and map every line to one."""
        shape_counts = Counter(self._line_shapes)
        counts_list = [shape_counts[sid] for sid in range(len(self._shapes))]
        shape_template = _cluster(self._shapes, counts_list)
        ids: dict[str, int] = {}
        counts: list[int] = []
        examples: list[str] = []
        texts: list[str] = []
        shape_tid: list[int] = []
        for sid, text in enumerate(shape_template):
            tid = ids.get(text)
            if tid is None:
                tid = ids[text] = len(texts)
                texts.append(text)
                counts.append(0)
                examples.append(self._examples[sid])
            counts[tid] += counts_list[sid]
            shape_tid.append(tid)
        templates = [Template(i, texts[i], counts[i], examples[i]) for i in range(len(texts))]
        return MinedTemplates(templates, list(map(shape_tid.__getitem__, self._line_shapes)))


def _index_of_none(values: list[int | None], start: int) -> int:
    try:
        return values.index(None, start)
    except ValueError:
        return -1


def mine(messages: Iterable[str]) -> MinedTemplates:
    """Mine the templates of `messages` (one message per item)."""
    miner = TemplateMiner()
    miner.add_many(messages)
    return miner.result()


def mine_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> MinedTemplates:
    """Mine a file whose every line is a message (the fast path: no header parsing)."""
    miner = TemplateMiner()
    with open_binary(path) as stream:
        for chunk in read_chunks(stream, chunk_size):
            miner.add_lines(chunk)
    return miner.result()


_GLUE = "\x00"  # marks a token glued to the previous one (`key=` + value)
_OPEN = "([{\"'"
_CLOSE = ")]}\"',;:."


def _tokens(shape: str) -> list[str]:
    """Words of a shape; `key=value` is two tokens so the key survives as a constant."""
    out: list[str] = []
    for word in shape.split():
        key, sep, value = word.partition("=")
        if sep and key and value:
            out += [key + "=", _GLUE + value]
        else:
            out.append(word)
    return out


def _text(tokens: Iterable[str]) -> str:
    return " ".join(tokens).replace(" " + _GLUE, "")


def _is_wild(token: str) -> bool:
    return token == WILDCARD or token == _GLUE + WILDCARD


def _wild(token: str) -> str:
    """A parameter token as `<*>`, keeping its glue and the brackets or punctuation
    around it (`(host)` → `(<*>)`, `root,` → `<*>,`)."""
    glue = _GLUE if token.startswith(_GLUE) else ""
    body = token[len(glue):]
    start, end = 0, len(body)
    while start < end and body[start] in _OPEN:
        start += 1
    while end > start and body[end - 1] in _CLOSE:
        end -= 1
    return glue + body[:start] + WILDCARD + body[end:]


def _cluster(shapes: list[str], counts: list[int]) -> list[str]:
    """The template text of every shape (same order)."""
    by_length: dict[int, list[int]] = defaultdict(list)
    split = [_tokens(shape) for shape in shapes]
    for sid, words in enumerate(split):
        by_length[len(words)].append(sid)
    out = [""] * len(shapes)
    for members in by_length.values():
        for sid, text in _cluster_same_length([split[s] for s in members],
                                              [counts[s] for s in members]).items():
            out[members[sid]] = text
    return out


def _cluster_same_length(rows: list[list[str]], counts: list[int]) -> dict[int, str]:
    freq: Counter[tuple[int, str]] = Counter()
    for words, count in zip(rows, counts, strict=True):
        for pos, word in enumerate(words):
            freq[pos, word] += count
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for row, words in enumerate(rows):
        groups[_core(words, freq)].append(row)
    out: dict[int, str] = {}
    for pattern, members in groups.items():
        for row, words in _split_few_values(pattern, [rows[m] for m in members], members):
            out[row] = _text(words)
    return out


def _core(words: list[str], freq: Counter[tuple[int, str]]) -> tuple[str, ...]:
    """The words of a shape that occur exactly as often as its template does.

    The template frequency is the one shared by most of the shape's words; on a tie
    the rarer one, whose words are the more specific template. Commoner words that
    belong to the template come back later, as words every member shares."""
    wf = [0 if _is_wild(word) else freq[pos, word] for pos, word in enumerate(words)]
    support = Counter(f for f in wf if f)
    if not support:
        return tuple(words)
    template_freq = max(support, key=lambda f: (support[f], -f))
    return tuple(word if f == template_freq else WILDCARD
                 for word, f in zip(words, wf, strict=True))


def _split_few_values(pattern: tuple[str, ...], rows: list[list[str]],
                      members: list[int]) -> Iterator[tuple[int, list[str]]]:
    """Each member row with its template: shared words are constants, positions with
    a few distinct words are split into one template per word, the rest are `<*>`."""
    template: list[str] = []
    for pos in range(len(pattern)):
        values = {row[pos] for row in rows}
        if len(values) == 1:
            template.append(values.pop())
        elif (len(values) <= SPLIT_MAX_VALUES or pos == 0) and \
                not any(value.startswith(_GLUE) or WILDCARD in value for value in values):
            template.append("")  # a meaning, not a parameter: restored per row below
        else:
            template.append(_wild_all(values))
    for member, row in zip(members, rows, strict=True):
        yield member, [word or row[pos] for pos, word in enumerate(template)]


def _wild_all(values: set[str]) -> str:
    """The wildcard for a position: brackets and punctuation all values share are kept."""
    shapes = {_wild(value) for value in values}
    if len(shapes) == 1:
        return shapes.pop()
    return (_GLUE if any(v.startswith(_GLUE) for v in values) else "") + WILDCARD
