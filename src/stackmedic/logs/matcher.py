"""Multi-pattern matching of log chunks, attributing hits to lines and signatures.

Three engines give identical results on the portable ERE subset (see
`stackmedic.logs.signatures`), chosen automatically in this order:

* **hyperscan** (PyPI `hyperscan`): every pattern of every signature compiled into
  one database, scanned once per chunk; the callback only records match ends.
* **re2** (PyPI `google-re2`) and **re**: one alternation of all patterns finds
  the next line with any hit; that line is then tested signature by signature.

A chunk is whole lines of bytes (`bytes`, or the first `length` bytes of a reused
`bytearray`); a hit is `(line start, line end, signature index)`, at most once per
line and signature, sorted by line. `STACKMEDIC_LOG_ENGINE=re` forces an engine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = ["ENGINES", "Hit", "Matcher", "available_engines", "make_matcher"]

Hit = tuple[int, int, int]
ENGINES = ("hyperscan", "re2", "re")


class Matcher(Protocol):
    """Finds, in a chunk of whole lines, every (line, signature) pair that matches."""

    engine: str

    def scan(self, chunk: bytes | bytearray, length: int | None = None) -> list[Hit]: ...


def available_engines() -> list[str]:
    """The engines importable here, best first."""
    out = []
    for name, module in (("hyperscan", "hyperscan"), ("re2", "re2")):
        try:
            __import__(module)
        except ImportError:
            continue
        out.append(name)
    return [*out, "re"]


def make_matcher(patterns: Sequence[tuple[int, str]], engine: str | None = None) -> Matcher:
    """A matcher for `(signature index, pattern)` pairs on the best (or named) engine."""
    engine = engine or os.environ.get("STACKMEDIC_LOG_ENGINE") or available_engines()[0]
    if engine == "hyperscan":
        return _Hyperscan(patterns)
    if engine in ("re2", "re"):
        return _Alternation(patterns, engine)
    raise ValueError(f"unknown matching engine {engine!r} (expected one of {ENGINES})")


def _line_bounds(chunk: bytes, start: int, end: int) -> tuple[int, int]:
    line_start = chunk.rfind(b"\n", 0, start) + 1
    line_end = chunk.find(b"\n", end)
    return line_start, line_end if line_end >= 0 else len(chunk)


Chunk = bytes | bytearray


class _Hyperscan:
    engine = "hyperscan"

    def __init__(self, patterns: Sequence[tuple[int, str]]) -> None:
        self._signature_of = [sig for sig, _ in patterns]
        self._db = _hyperscan_database([p for _, p in patterns])

    def scan(self, chunk: Chunk, length: int | None = None) -> list[Hit]:
        size = len(chunk) if length is None else length
        ends: list[tuple[int, int]] = []
        append = ends.append

        def on_match(pattern: int, _start: int, end: int, _flags: int, _ctx: Any) -> None:
            append((end, pattern))

        with memoryview(chunk) as view:  # no copy of a reused buffer
            self._db.scan(view[:size], match_event_handler=on_match)
        if not ends:
            return []
        ends.sort()
        signature_of = self._signature_of
        hits: list[Hit] = []
        line_start = line_end = -1
        here: set[int] = set()
        for end, pattern in ends:
            sig = signature_of[pattern]
            if end > line_end:
                # A match never contains a newline: its line starts after the last
                # newline before its end and ends at the first newline after it.
                line_start = chunk.rfind(b"\n", 0, end) + 1
                line_end = chunk.find(b"\n", end, size)
                if line_end < 0:
                    line_end = size
                here = set()
            if sig not in here:
                here.add(sig)
                hits.append((line_start, line_end, sig))
        return hits


def _hyperscan_database(expressions: list[str]) -> Any:
    """A compiled block-mode database, from the on-disk cache when the same patterns
    were compiled before (compiling a few hundred patterns takes most of a second)."""
    import hashlib

    import hyperscan

    key = hashlib.sha256("\0".join(["v1", *expressions]).encode()).hexdigest()[:24]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stackmedic"
    path = cache / f"hyperscan-{key}.db"
    try:
        db = hyperscan.loadb(path.read_bytes(), hyperscan.HS_MODE_BLOCK)
        db.scratch = hyperscan.Scratch(db)
        return db
    except (OSError, hyperscan.error):
        pass  # not cached yet, or from another hyperscan build: compile it
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=[e.encode() for e in expressions], ids=list(range(len(expressions))),
               elements=len(expressions), flags=[0] * len(expressions))
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(hyperscan.dumpb(db))
        tmp.replace(path)  # atomic: a concurrent reader sees the old or the new file
    except OSError:
        pass  # a read-only home: compile every time
    return db


class _Alternation:
    def __init__(self, patterns: Sequence[tuple[int, str]], engine: str) -> None:
        compile_: Callable[[bytes], Any]
        if engine == "re2":
            import re2  # type: ignore[import-untyped]

            compile_ = re2.compile
        else:
            import re

            compile_ = re.compile
        self.engine = engine
        self._any = compile_(b"|".join(b"(?:" + p.encode() + b")" for _, p in patterns))
        by_signature: dict[int, list[str]] = {}
        for sig, pattern in patterns:
            by_signature.setdefault(sig, []).append(pattern)
        self._signatures = [
            (sig, compile_(b"|".join(b"(?:" + p.encode() + b")" for p in pats)))
            for sig, pats in sorted(by_signature.items())]

    def scan(self, chunk: Chunk, length: int | None = None) -> list[Hit]:
        if length is not None or not isinstance(chunk, bytes):
            chunk = bytes(chunk[:length])  # the fallback engines take plain bytes
        hits: list[Hit] = []
        search = self._any.search
        pos, size = 0, len(chunk)
        while pos < size:
            match = search(chunk, pos)
            if match is None:
                break
            line_start, line_end = _line_bounds(chunk, match.start(), match.end())
            line = chunk[line_start:line_end]
            for sig, regex in self._signatures:
                if regex.search(line):
                    hits.append((line_start, line_end, sig))
            pos = line_end + 1
        return hits
