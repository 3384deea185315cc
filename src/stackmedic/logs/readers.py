"""Reading log files as numbered lines, whatever state they are in.

Plain, `.gz`, `.bz2` and `.xz` files; rotated sets (`app.log.3.gz`, `app.log.2`,
`app.log.1`, `app.log`: oldest first); and `follow`, which tails a file across
rotation and truncation. Bad input is a fact, never a crash: invalid UTF-8 is
replaced (U+FFFD), NUL bytes are dropped, a line longer than `max_line` bytes is
cut there (the rest skipped without being held in memory), and a truncated or
corrupt archive ends its file early. Each case is counted in `ReadStats` and
described by one warning line; line numbers stay those of the file.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import lzma
import os
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

__all__ = ["ARCHIVE_ERRORS", "LONG_LINE", "MAX_LINE", "ReadStats", "expand", "follow",
           "open_binary", "read_chunks", "read_line", "read_lines", "rotated_set"]

MAX_LINE = 1 << 20
"""Bytes of one line that are kept; longer lines are cut (and counted)."""

# Errors a damaged archive raises part-way through (never at open time).
ARCHIVE_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError)
_ROTATED_SUFFIX = re.compile(r"^[.-](?P<n>\d+)(?:\.gz|\.bz2|\.xz)?$")


@dataclass
class ReadStats:
    """What reading met: line and byte counts, and each kind of damage."""

    files: int = 0
    lines: int = 0
    lines_counted: bool = True
    bytes: int = 0
    invalid_utf8: int = 0
    nul_lines: int = 0
    long_lines: int = 0
    truncated_files: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        if len(self.warnings) < 100:  # bounded: a damaged file must not flood the report
            self.warnings.append(message)

    def as_dict(self) -> dict[str, object]:
        return {"files": self.files, "lines": self.lines, "bytes": self.bytes,
                "invalid_utf8": self.invalid_utf8, "nul_lines": self.nul_lines,
                "long_lines": self.long_lines, "truncated_files": self.truncated_files[:10],
                "unreadable": self.unreadable[:10]}


def open_binary(path: str | os.PathLike[str]) -> BinaryIO:
    """The file's bytes, decompressed according to its suffix."""
    # The caller owns the stream and closes it (`with open_binary(p) as f:`).
    name = os.fspath(path)
    suffix = Path(name).suffix
    if suffix == ".gz":
        return cast(BinaryIO, gzip.open(name, "rb"))
    if suffix == ".bz2":
        return cast(BinaryIO, bz2.open(name, "rb"))
    if suffix == ".xz":
        return cast(BinaryIO, lzma.open(name, "rb"))
    return open(name, "rb")


def rotated_set(path: str | os.PathLike[str]) -> list[Path]:
    """`path` and its rotated siblings, oldest first (`app.log.2.gz`, `app.log.1`,
    `app.log`); dated siblings (`app.log-20240101.gz`) sort by their date."""
    base = Path(path)
    if not base.parent.is_dir():
        return [base]
    prefix = base.name
    numbered: list[tuple[int, Path]] = []
    for sibling in base.parent.iterdir():
        name = sibling.name
        if name == prefix or not name.startswith(prefix) or not sibling.is_file():
            continue
        match = _ROTATED_SUFFIX.match(name[len(prefix):])
        if match:
            numbered.append((int(match["n"]), sibling))
    dated = [(n, p) for n, p in numbered if n > 10_000_000]  # a yyyymmdd suffix
    plain = [(n, p) for n, p in numbered if n <= 10_000_000]
    ordered = [p for _, p in sorted(plain, reverse=True)] + [p for _, p in sorted(dated)]
    return [*ordered, base] if base.exists() or not ordered else ordered


def expand(paths: Iterable[str | os.PathLike[str]], *, rotated: bool = True) -> list[Path]:
    """Paths to read, in time order: globs expanded, rotated siblings included."""
    out: list[Path] = []
    for raw in paths:
        text = str(Path(raw).expanduser())
        # glob.glob, not Path().glob: the latter refuses absolute patterns
        # (`/var/log/app/*.log`), the most common kind in a stack file.
        matches = [Path(m) for m in sorted(glob.glob(text))] if any(c in text for c in "*?[") \
            else [Path(text)]
        for path in matches:
            for item in rotated_set(path) if rotated else [path]:
                if item not in out:
                    out.append(item)
    return out


def read_lines(paths: Iterable[str | os.PathLike[str]], stats: ReadStats | None = None, *,
               max_line: int = MAX_LINE, start: int = 0) -> Iterator[tuple[str, int, str]]:
    """`(path, line number, text)` for every line of every file, in order. With
    `start`, each plain file is read from the first line that begins at or after that
    byte offset (line numbers then count from there)."""
    stats = stats if stats is not None else ReadStats()
    for path in paths:
        name = os.fspath(path)
        try:
            stream = open_binary(name)
            if start and stream.seekable():
                stream.seek(start - 1)
                if stream.read(1) != b"\n":
                    _skip_rest_of_line(stream)
        except OSError as err:
            stats.unreadable.append(name)
            stats.warn(f"{name}: cannot open: {err.strerror or err}")
            continue
        stats.files += 1
        with stream:
            yield from _lines_of(name, stream, stats, max_line)


def _lines_of(name: str, stream: BinaryIO, stats: ReadStats,
              max_line: int) -> Iterator[tuple[str, int, str]]:
    number = 0
    while True:
        try:
            raw = stream.readline(max_line)
            if raw and not raw.endswith(b"\n") and len(raw) >= max_line:
                skipped = _skip_rest_of_line(stream)
                stats.long_lines += 1
                stats.warn(f"{name}:{number + 1}: line of {len(raw) + skipped} bytes cut "
                           f"to {max_line}")
                raw += b"\n"
        except ARCHIVE_ERRORS as err:
            stats.truncated_files.append(name)
            stats.warn(f"{name}: archive truncated or corrupt after line {number}: {err}")
            return
        if not raw:
            return
        number += 1
        stats.lines += 1
        stats.bytes += len(raw)
        yield name, number, decode(raw, stats, name, number)


LONG_LINE = 16 << 20
"""Bytes of one line that chunked readers keep (`read_chunks`, the signature scan); a
longer line (a file of NULs without a newline, a dumped blob) is cut there and the
rest skipped, so memory stays bounded whatever the input."""


def read_chunks(stream: BinaryIO, size: int = 16 << 20,
                max_line: int = LONG_LINE) -> Iterator[bytes]:
    """The stream in blocks of about `size` bytes that end at a line end (the last
    one may not); a line longer than a block makes that block longer, up to `max_line`
    bytes (the rest of such a line is skipped). Reads go in steps of at most 256 KiB,
    so when a damaged archive raises, the complete lines read before the damage are
    yielded first."""
    step = min(size, 256 * 1024)
    rest = b""
    skipping = False  # inside a line already cut at max_line: drop up to its newline
    while True:
        parts = [rest]
        filled = len(rest)
        try:
            while filled < size:
                piece = stream.read(step)
                if not piece:
                    break
                if skipping:
                    end = piece.find(b"\n")
                    if end < 0:
                        continue
                    piece, skipping = piece[end + 1:], False
                parts.append(piece)
                filled += len(piece)
        except ARCHIVE_ERRORS:
            block = b"".join(parts)
            cut = block.rfind(b"\n") + 1
            if cut:
                yield block[:cut]
            raise
        block = b"".join(parts)
        if filled == len(rest):  # nothing more to read
            if rest:
                yield rest
            return
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            if len(block) >= max_line:
                yield block[:max_line] + b"\n"
                rest, skipping = b"", True
            else:
                rest = block
            continue
        rest = block[cut:]
        yield block[:cut]


def read_line(stream: BinaryIO, max_line: int = LONG_LINE) -> tuple[bytes, int]:
    """The rest of the current line (with its newline) and the bytes consumed; a line
    longer than `max_line` is cut there (a newline added) and its rest skipped."""
    line = stream.readline(max_line)
    if len(line) < max_line or line.endswith(b"\n"):
        return line, len(line)
    skipped = _skip_rest_of_line(stream)
    return line + b"\n", len(line) + skipped


def _skip_rest_of_line(stream: BinaryIO) -> int:
    skipped = 0
    while True:
        chunk = stream.readline(MAX_LINE)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped


def decode(raw: bytes, stats: ReadStats, name: str = "", number: int = 0) -> str:
    """One line's text: newline removed, NULs dropped, invalid UTF-8 replaced."""
    raw = raw.rstrip(b"\r\n")
    if b"\0" in raw:
        stats.nul_lines += 1
        if stats.nul_lines == 1:
            stats.warn(f"{name}:{number}: NUL bytes dropped (first of possibly many lines)")
        raw = raw.replace(b"\0", b"")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.invalid_utf8 += 1
        if stats.invalid_utf8 == 1:
            stats.warn(f"{name}:{number}: invalid UTF-8 replaced (first of possibly many lines)")
        return raw.decode("utf-8", "replace")


def follow(path: str | os.PathLike[str], *, poll: float = 0.5, from_start: bool = False,
           stop: Callable[[], bool] = lambda: False,
           stats: ReadStats | None = None) -> Iterator[str]:
    """New lines of `path` as they are written, across rotation (the path now names a
    new file: read it from its start) and truncation (the file shrank: read again from
    its start). Yields only complete lines; ends when `stop()` is true."""
    stats = stats if stats is not None else ReadStats()
    name = os.fspath(path)
    handle: BinaryIO | None = None
    inode = offset = 0
    pending = b""
    first = True
    while not stop():
        if handle is None:
            try:
                handle = open(name, "rb")  # noqa: SIM115  # kept open across polls
            except OSError:
                time.sleep(poll)
                continue
            inode = os.fstat(handle.fileno()).st_ino
            if first and not from_start:
                handle.seek(0, os.SEEK_END)
            offset, first = handle.tell(), False
        chunk = handle.read(MAX_LINE)
        if chunk:
            offset += len(chunk)
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                stats.lines += 1
                yield decode(raw, stats, name, stats.lines)
            if len(pending) > MAX_LINE:
                stats.long_lines += 1
                pending = b""
            continue
        try:
            current = Path(name).stat()
        except FileNotFoundError:
            current = None
        if current is not None and current.st_ino != inode:
            stats.warn(f"{name}: rotated, reading the new file")
            handle.close()
            handle, first, pending = None, False, b""
            continue
        if current is not None and current.st_size < offset:
            stats.warn(f"{name}: truncated, reading from the start")
            handle.seek(0)
            offset, pending = 0, b""
            continue
        time.sleep(poll)
    if handle is not None:
        handle.close()
