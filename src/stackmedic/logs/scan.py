"""Signature scan: large line-aligned chunks, both cores, hits aggregated per signature.

A plain file is cut into byte ranges of `RANGE_BYTES`; worker processes (one per
core) scan the lines that start in their range, chunk by chunk, with one matcher
compiled per process. Compressed files are scanned as one stream. Memory stays
bounded by chunk size times workers, whatever the file size. Each signature gets its
count, first/last minute seen, a per-minute histogram, up to `EXAMPLES` redacted
example lines, the files it was seen in and, if it declares a `breakdown`, its line
count per value (computed with Python `re` on matched lines only).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BufferedReader
from pathlib import Path
from typing import Any

from stackmedic.logs.matcher import Matcher, make_matcher
from stackmedic.logs.readers import (
    ARCHIVE_ERRORS,
    LONG_LINE,
    ReadStats,
    open_binary,
    read_chunks,
    read_line,
)
from stackmedic.logs.signatures import Signature
from stackmedic.redact import redact_text

__all__ = ["EXAMPLES", "ScanResult", "SignatureHits", "minute_as_written", "minute_of",
           "scan_files"]

EXAMPLES = 5
CHUNK_BYTES = 4 << 20
RANGE_BYTES = 64 << 20
EXAMPLE_CHARS = 300

_MONTHS = {m: i for i, m in enumerate(
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
     b"Dec"], 1)}
_STAMP = re.compile(
    rb"(?P<iso>(?P<y>\d{4})[-/](?P<mo>\d\d)[-/](?P<d>\d\d)[T ](?P<h>\d\d):(?P<mi>\d\d))"
    rb"|(?P<clf>(?P<cd>\d\d)/(?P<cmo>[A-Z][a-z]{2})/(?P<cy>\d{4}):(?P<ch>\d\d):(?P<cmi>\d\d))"
    rb"|(?P<sys>^(?P<smo>[A-Z][a-z]{2}) (?P<sd>[ \d]\d) (?P<sh>\d\d):(?P<smi>\d\d))")
_minute_cache: dict[bytes, str | None] = {}
_MISSING = object()


def minute_of(line: bytes) -> str | None:
    """The minute a line was written (`2024-05-01T10:00Z`), from the first timestamp in
    its first 80 bytes (ISO, nginx, Apache/CLF or syslog); None if there is none."""
    head = line[:16]
    if head[:4].isdigit() and head[4:5] in (b"-", b"/"):
        # An ISO or nginx timestamp leads the line: its first 16 bytes are the minute,
        # so lines of the same minute share one cache entry.
        minute = _minute_cache.get(head, _MISSING)
        if minute is not _MISSING:
            return minute  # type: ignore[return-value]
        minute = _parse_minute(head)
        if minute is None:
            return _parse_minute(line)
        if len(_minute_cache) < 100_000:
            _minute_cache[head] = minute
        return minute
    return _parse_minute(line)


def minute_as_written(sample: str, at: datetime) -> str:
    """The minute `at` spelled the way the timestamp in `sample` (a line of the same
    log) spells it, as a fixed string to grep for: `2024-05-01 10:10`,
    `01/May/2024:10:10`, `May  1 10:10`; ISO `2024-05-01T10:10` if `sample` has none."""
    match = _STAMP.search(sample.encode("utf-8", "replace"), 0, 80)
    if match is None or match["iso"]:
        date_sep = chr(match.group(0)[4]) if match else "-"
        time_sep = chr(match.group(0)[10]) if match else "T"
        return at.strftime(f"%Y{date_sep}%m{date_sep}%d{time_sep}%H:%M")
    if match["clf"]:
        return at.strftime("%d/%b/%Y:%H:%M")
    return f"{at:%b} {at.day:2d} {at:%H:%M}"


def _parse_minute(line: bytes) -> str | None:
    match = _STAMP.search(line, 0, 80)
    if match is None:
        return None
    key = match.group(0)
    if key in _minute_cache:
        return _minute_cache[key]
    minute: str | None
    try:
        if match["iso"]:
            y, mo, d, h, mi = (int(match[g]) for g in ("y", "mo", "d", "h", "mi"))
        elif match["clf"]:
            y, mo, d = int(match["cy"]), _MONTHS[match["cmo"]], int(match["cd"])
            h, mi = int(match["ch"]), int(match["cmi"])
        else:
            y, mo, d = datetime.now(UTC).year, _MONTHS[match["smo"]], int(match["sd"])
            h, mi = int(match["sh"]), int(match["smi"])
        minute = datetime(y, mo, d, h, mi, tzinfo=UTC).strftime("%Y-%m-%dT%H:%MZ")
    except (KeyError, ValueError):
        minute = None
    if len(_minute_cache) < 100_000:
        _minute_cache[key] = minute
    return minute


@dataclass
class SignatureHits:
    """Everything the scan saw of one signature."""

    signature: Signature
    count: int = 0
    first_seen: str | None = None
    last_seen: str | None = None
    per_minute: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    breakdown: Counter[str] = field(default_factory=Counter)


@dataclass
class ScanResult:
    """The outcome of scanning some files with some signatures."""

    engine: str
    hits: list[SignatureHits]
    matched_lines: int = 0
    stats: ReadStats = field(default_factory=ReadStats)


# --- work done in each process ----------------------------------------------------

_matcher: Matcher | None = None
Breakdowns = dict[int, tuple[list[re.Pattern[bytes]], re.Pattern[bytes]]]
_breakdowns: Breakdowns = {}  # signature -> (its patterns, its breakdown value)
Superseded = dict[int, frozenset[int]]
_superseded: Superseded = {}  # signature -> the signatures that win a line over it


def _set_matcher(signatures: Sequence[Signature], engine: str | None) -> None:
    global _matcher, _breakdowns, _superseded
    _matcher = make_matcher([(i, p) for i, s in enumerate(signatures) for p in s.patterns],
                            engine)
    _breakdowns = {
        i: ([re.compile(p.encode()) for p in s.patterns], re.compile(s.breakdown.value.encode()))
        for i, s in enumerate(signatures) if s.breakdown}
    index = {s.id: i for i, s in enumerate(signatures)}
    winners: dict[int, set[int]] = {}
    for i, s in enumerate(signatures):
        for loser in s.supersedes:
            if loser in index:  # a pack may supersede a signature that is not loaded
                winners.setdefault(index[loser], set()).add(i)
    _superseded = {loser: frozenset(won) for loser, won in winners.items()}


def _without_superseded(hits: list[tuple[int, int, int]], superseded: Superseded,
                        ) -> list[tuple[int, int, int]]:
    """The hits minus those of a signature superseded by another one on the same line
    (hits come grouped by line): one line, one finding for the most specific cause."""
    out: list[tuple[int, int, int]] = []
    i, n = 0, len(hits)
    while i < n:
        j, start = i + 1, hits[i][0]
        while j < n and hits[j][0] == start:
            j += 1
        if j - i == 1:
            out.append(hits[i])
        else:
            on_line = {hit[2] for hit in hits[i:j]}
            out.extend(hit for hit in hits[i:j]
                       if not superseded.get(hit[2], frozenset()) & on_line)
        i = j
    return out


# Distinct breakdown values a scan keeps per process (beyond them: `other`), and the
# length of each: a pack whose `value` matches ids or times cannot grow memory per line.
MAX_BREAKDOWN_VALUES = 1000
_VALUE_BYTES = 64


def _value_of(line: bytes, patterns: list[re.Pattern[bytes]], value: re.Pattern[bytes],
              ) -> bytes:
    """The breakdown value of a matched line: the first match of `value` within the text
    the signature's first matching pattern matched (b"other" if there is none)."""
    for pattern in patterns:
        found = pattern.search(line)
        if found:
            got = value.search(line, *found.span())
            return got.group(0)[:_VALUE_BYTES] if got else b"other"
    return b"other"


@dataclass
class _Partial:
    """What one task saw. Without `count_lines`, examples carry their byte offset in
    the file and the parent numbers only the few it keeps (`_number_examples`)."""

    count_lines: bool = True
    breakdowns: Breakdowns = field(default_factory=dict)
    superseded: Superseded = field(default_factory=dict)
    lines: int = 0
    size: int = 0
    matched: int = 0
    counts: Counter[int] = field(default_factory=Counter)
    minutes: dict[int, Counter[str]] = field(default_factory=dict)
    examples: dict[int, list[tuple[int | None, int, str]]] = field(default_factory=dict)
    values: dict[int, Counter[str]] = field(default_factory=dict)
    error: str | None = None
    unreadable: bool = False
    _pairs: Counter[tuple[int, str | None]] = field(default_factory=Counter)
    _values: Counter[tuple[int, bytes]] = field(default_factory=Counter)
    _full: set[int] = field(default_factory=set)

    def add_chunk(self, chunk: bytes | bytearray, matcher: Matcher,
                  length: int | None = None, base: int = 0) -> None:
        size = len(chunk) if length is None else length
        hits = matcher.scan(chunk, length)
        if hits:
            self._add_hits(chunk, hits, base)
        if self.count_lines:
            self.lines += chunk.count(b"\n", 0, size) + (0 if chunk[size - 1] == 10 else 1)
        self.size += size

    def _add_hits(self, chunk: bytes | bytearray, hits: list[tuple[int, int, int]],
                  base: int) -> None:
        # Hits come grouped by line, in order; this loop runs once per (line, signature)
        # hit, so it keeps to local names and dict lookups.
        # (signature, minute) pairs are counted in one dict operation per hit;
        # `finish` splits them into counts and per-minute histograms.
        if self.superseded:
            hits = _without_superseded(hits, self.superseded)
        pairs, full, examples = self._pairs, self._full, self.examples
        values, breakdowns = self._values, self.breakdowns
        previous = -1
        matched = 0
        counted_to, counted = 0, 0  # example line numbers: count newlines once per chunk
        minute: str | None = None
        line = b""
        for line_start, line_end, sig in hits:
            if line_start != previous:
                matched += 1
                previous = line_start
                line = bytes(chunk[line_start:line_end])
                minute = minute_of(line)
            pairs[sig, minute] += 1
            if sig in breakdowns:
                key = (sig, _value_of(line, *breakdowns[sig]))
                if key not in values and len(values) >= MAX_BREAKDOWN_VALUES:
                    key = (sig, b"other")  # a value per line (an id, a time) stays bounded
                values[key] += 1
            if sig in full:
                continue
            kept = examples.setdefault(sig, [])
            if len(kept) + 1 >= EXAMPLES:
                full.add(sig)
            if len(kept) < EXAMPLES:
                number = None
                if self.count_lines:
                    counted += chunk.count(b"\n", counted_to, line_start)
                    counted_to = line_start
                    number = self.lines + counted + 1
                kept.append((number, base + line_start,
                             line[:EXAMPLE_CHARS * 4].decode("utf-8", "replace")))
        self.matched += matched

    def finish(self) -> _Partial:
        """Fold the (signature, minute) and (signature, value) pair counts into `counts`,
        `minutes` and `values`."""
        for (sig, minute), n in self._pairs.items():
            self.counts[sig] += n
            if minute is not None:
                self.minutes.setdefault(sig, Counter())[minute] += n
        self._pairs.clear()
        for (sig, value), n in self._values.items():
            self.values.setdefault(sig, Counter())[value.decode("utf-8", "replace")] += n
        self._values.clear()
        return self


def _range_chunks(stream: BufferedReader, start: int,
                  end: int) -> Iterator[tuple[bytearray, int, int]]:
    """`(buffer, length, file offset)` chunks of the lines that start in [start, end). One buffer is
    reused (filled with `readinto`): fresh multi-megabyte objects per chunk would cost
    a page fault per 4 KiB. Consume each chunk before asking for the next."""
    if start:
        stream.seek(start - 1)
        if stream.read(1) != b"\n":
            # The line in progress belongs to the previous range. Skip it in bounded
            # reads, and only up to `end`: a giant line spanning many ranges must not be
            # read again by each of them.
            while True:
                piece = stream.readline(1 << 20)
                if not piece or stream.tell() >= end:
                    return
                if piece.endswith(b"\n"):
                    break
    pos = stream.tell()
    buf = bytearray(CHUNK_BYTES)
    kept = 0  # bytes of an incomplete line carried to the front of the buffer
    with memoryview(buf) as view:
        while pos < end or kept:
            want = min(CHUNK_BYTES - kept, max(end - pos, 0))
            got = stream.readinto(view[kept:kept + want]) if want else 0
            pos += got
            filled = kept + got
            if not filled:
                return
            if pos >= end or got == 0:
                # The last line may run past `end`: finish it, then stop.
                tail = b"" if buf[filled - 1] == 10 else read_line(stream)[0]
                yield buf[:filled] + tail if tail else buf, filled + len(tail), pos - filled
                return
            cut = buf.rfind(b"\n", 0, filled) + 1
            if cut == 0:  # one line longer than the buffer: grow it for this line
                tail, consumed = read_line(stream, max(LONG_LINE - filled, 1))
                yield buf[:filled] + tail, filled + len(tail), pos - filled
                pos += consumed
                kept = 0
                continue
            yield buf, cut, pos - filled
            kept = filled - cut
            buf[:kept] = buf[cut:filled]


def _scan_range(path: str, start: int, end: int, count_lines: bool) -> _Partial:
    assert _matcher is not None
    partial = _Partial(count_lines, _breakdowns, _superseded)
    with open(path, "rb") as stream:
        for chunk, length, base in _range_chunks(stream, start, end):
            partial.add_chunk(chunk, _matcher, length, base)
    return partial.finish()


def _scan_stream(path: str) -> _Partial:
    assert _matcher is not None
    partial = _Partial(breakdowns=_breakdowns, superseded=_superseded)
    try:
        with open_binary(path) as stream:
            for chunk in read_chunks(stream, CHUNK_BYTES):
                partial.add_chunk(chunk, _matcher)
    except ARCHIVE_ERRORS as err:
        partial.error = f"archive truncated or corrupt after line {partial.lines}: {err}"
    return partial.finish()


# --- orchestration ----------------------------------------------------------------

Task = tuple[str, int, int, bool]


def _tasks(paths: Sequence[Path], count_lines: bool) -> list[Task]:
    """(path, start, end, count lines) ranges; end -1 means the whole file as a stream
    (compressed files, whose lines are always counted: decompressing costs more)."""
    tasks: list[Task] = []
    for path in paths:
        name = str(path)
        if path.suffix in (".gz", ".bz2", ".xz"):
            tasks.append((name, 0, -1, True))
            continue
        size = path.stat().st_size
        tasks += [(name, start, min(start + RANGE_BYTES, size), count_lines)
                  for start in range(0, max(size, 1), RANGE_BYTES)]
    return tasks


def _run(task: Task) -> _Partial:
    name, start, end, count_lines = task
    try:
        return _scan_stream(name) if end < 0 else _scan_range(name, start, end, count_lines)
    except OSError as err:  # unreadable, or vanished since it was listed
        return _Partial(error=f"cannot read: {err.strerror or err}", unreadable=True)


def scan_files(paths: Sequence[str | os.PathLike[str]], signatures: Sequence[Signature], *,
               engine: str | None = None, workers: int | None = None,
               progress: Any = None, count_lines: bool = True) -> ScanResult:
    """Scan `paths` (read in the order given) for `signatures`. `workers` defaults to
    one per core; 1 scans in this process. `progress(done_bytes, total_bytes)` is
    called as ranges finish. Without `count_lines`, `stats.lines` stays 0 for plain
    files and only example lines are numbered (a fifth of the work on large files)."""
    stats = ReadStats()
    existing: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            existing.append(path)
        else:
            stats.unreadable.append(str(path))
            stats.warn(f"{path}: no such file")
    tasks = _tasks(existing, count_lines)
    workers = workers or os.cpu_count() or 1
    workers = min(workers, len(tasks)) or 1
    _set_matcher(signatures, engine)
    assert _matcher is not None
    result = ScanResult(_matcher.engine, [SignatureHits(s) for s in signatures], stats=stats)
    total = sum(p.stat().st_size for p in existing)
    if workers == 1:
        partials: Iterator[_Partial] = map(_run, tasks)
        _merge(result, tasks, partials, progress, total)
    else:
        import multiprocessing

        # Forked workers inherit the compiled matcher: no second compile per process.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            _merge(result, tasks, pool.map(_run, tasks), progress, total)
    stats.files = len(existing)
    stats.lines_counted = count_lines
    _number_examples(result)
    return result


def _number_examples(result: ScanResult) -> None:
    """Fill in the line numbers of kept examples that carry only a byte offset, with
    one pass over each file's bytes up to its last such offset."""
    wanted: dict[str, list[dict[str, Any]]] = {}
    for hits in result.hits:
        for example in hits.examples:
            if example["line"] is None:
                wanted.setdefault(example["file"], []).append(example)
    for name, examples in wanted.items():
        examples.sort(key=lambda e: e["offset"])
        lines, pos = 0, 0
        with open(name, "rb") as stream:
            for example in examples:
                while pos < example["offset"]:
                    block = stream.read(min(CHUNK_BYTES, example["offset"] - pos))
                    if not block:
                        break
                    lines += block.count(b"\n")
                    pos += len(block)
                example["line"] = lines + 1
    for hits in result.hits:
        for example in hits.examples:
            example.pop("offset", None)


def _merge(result: ScanResult, tasks: list[Task],
           partials: Iterator[_Partial], progress: Any, total: int) -> None:
    """Fold range results (in task order, so line numbers add up) into `result`."""
    stats = result.stats
    line_base: dict[str, int] = {}
    done = 0
    for (name, _start, _end, _count), partial in zip(tasks, partials, strict=True):
        base = line_base.get(name, 0)
        line_base[name] = base + partial.lines
        stats.lines += partial.lines
        stats.bytes += partial.size
        result.matched_lines += partial.matched
        if partial.error:
            damaged = stats.unreadable if partial.unreadable else stats.truncated_files
            if name not in damaged:
                damaged.append(name)
            stats.warn(f"{name}: {partial.error}")
        for sig, count in partial.counts.items():
            hits = result.hits[sig]
            hits.count += count
            if name not in hits.files and len(hits.files) < 10:
                hits.files.append(name)
            minutes = partial.minutes.get(sig, Counter())
            hits.per_minute.update(minutes)
            hits.breakdown.update(partial.values.get(sig, Counter()))
            if minutes:
                first, last = min(minutes), max(minutes)
                hits.first_seen = min(hits.first_seen or first, first)
                hits.last_seen = max(hits.last_seen or last, last)
            for number, offset, text in partial.examples.get(sig, []):
                if len(hits.examples) < EXAMPLES:
                    hits.examples.append({"file": name, "offset": offset,
                                          "line": None if number is None else base + number,
                                          "text": redact_text(text)[:EXAMPLE_CHARS]})
        done += partial.size
        if progress is not None:
            progress(done, total)
