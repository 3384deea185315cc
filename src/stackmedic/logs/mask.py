"""Generic masking of variable values in log messages, before template mining.

One compiled alternation replaces every value that is obviously a parameter
(URLs, emails, UUIDs, IPv4/IPv6 addresses with ports, MAC addresses, timestamps,
paths, hex numbers, sizes and durations, identifiers with digit runs, plain
numbers) with `<*>`. It is deliberately conservative around letters: `ssh2`,
`awdl0` or `tty2` are names, not values, while `core.2275`, `uid=0` and
`node-69` keep their constant prefix (`core.<*>`, `uid=<*>`, `node-<*>`).
A single `re.sub` with a constant replacement is the cheapest way to do this in
CPython; it dominates the miner's per-line cost.
"""

from __future__ import annotations

import re

__all__ = ["WILDCARD", "mask"]

WILDCARD = "<*>"

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*"
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*"
_HEX4 = r"[0-9A-Fa-f]{1,4}"
_GROUPS = rf"{_HEX4}(?::{_HEX4}){{0,6}}"
# A value never starts right after a letter/digit/underscore (so `ssh2` stays a word).
_B = r"(?<![A-Za-z0-9_])"
_E = r"(?![A-Za-z0-9_])"

_PATTERNS = [
    r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>\])]+",                       # URL
    r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+",                                   # email
    _B + r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" + _E,
    # dates: `Sat Jun 18 02:23:10 2005`, `2024-01-02T03:04:05.678Z`, `02:23:10.123`
    rf"{_DAY}\s+{_MONTH}\s+\d{{1,2}}\s+\d\d:\d\d:\d\d(?:\s+\d{{4}})?",
    _B + r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)?" + _E,
    _B + r"\d{1,2}:\d\d:\d\d(?:[.,]\d+)?" + _E,
    # IPv6 (full, or compressed with at least one group) and MAC addresses
    _B + rf"{_HEX4}(?::{_HEX4}){{7}}" + _E,
    _B + rf"(?:{_GROUPS}::(?:{_GROUPS})?|::{_GROUPS})" + _E,
    _B + r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}" + _E,
    # IPv4 with optional port, optionally after a slash (`/10.0.0.1:50010`)
    r"/?" + _B + r"\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?" + _E,
    # absolute paths with at least two components (`/var/run/x`, not `x+/y+`)
    r"(?<![\w.\-])/[\w.\-+@~%]*[\w\-+@~%](?:/[\w.\-+@~%]*)+",
    _B + r"0[xX][0-9a-fA-F]+" + _E,                                       # hex 0x…
    # long hex ids mixing digits and letters (hashes, object ids)
    _B + r"(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}" + _E,
    # identifiers with digit runs joined by underscores: blk_-123, task_2008_0001_m_5
    _B + r"[A-Za-z][A-Za-z0-9_]*_-?\d[A-Za-z0-9_]*" + _E,
    # host:port (`msra-sa-41:9000`, `db.internal:5432`)
    _B + r"[A-Za-z][\w\-]*(?:[.\-][\w\-]+)+:\d{2,5}" + _E,
    # numbers with an optional unit (sizes, durations, temperatures): 126MB, 20ms, 41C
    _B + r"[-+]?\d+(?:[.,]\d+)*(?:[kKMGTP]i?[bB]|[mun]?s|ms|C|%|\s?(?:[kKMGTP]i?B|B)\b)?" + _E,
]
_MASK = re.compile("|".join(f"(?:{p})" for p in _PATTERNS))
_RUN = re.compile(r"<\*>(?:\s*<\*>)+")
# Words that are part of a value when they stand next to one: units after a number
# (`384.0 B,`), day and month names before a time (`Sat Jun 18 02:23:10 2005`).
_UNITS = frozenset(["B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"])
_CALENDAR = frozenset(
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Jan", "Feb", "Mar", "Apr", "May",
     "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
_DIGITS = frozenset("0123456789")
_CACHE_LIMIT = 100_000
_ZERO = str.maketrans("123456789", "000000000")
_word_cache: dict[str, str] = {}
_zeroed_cache: dict[str, str] = {}


def mask_word(word: str) -> str:
    """One whitespace-free word with its values replaced by `<*>`."""
    masked = _word_cache.get(word)
    if masked is not None:
        return masked
    if _DIGITS.isdisjoint(word):
        masked = _mask_word(word)
        if len(_word_cache) < _CACHE_LIMIT:
            _word_cache[word] = masked
        return masked
    # Words with digits are mostly unique values; words that differ only in their
    # digits mask alike unless a digit survives masking (`ssh2`), so they share an
    # entry under their digits-zeroed form, and only that form is remembered.
    zeroed = word.translate(_ZERO)
    masked = _zeroed_cache.get(zeroed)
    if masked is not None:
        return masked
    masked = _mask_word(word)
    if len(_zeroed_cache) < _CACHE_LIMIT and _DIGITS.isdisjoint(masked):
        _zeroed_cache[zeroed] = masked
    return masked


def _mask_word(word: str) -> str:
    masked = _MASK.sub(WILDCARD, word)
    return _RUN.sub(WILDCARD, masked) if "*><" in masked else masked


def mask(message: str) -> str:
    """`message` with whitespace normalised and values replaced by `<*>`;
    consecutive wildcards collapse to one, so variable-length runs of values
    (`Fan speeds ( 3552 3534 3375 )`) share a template.

    Masking works word by word: the per-word results of the (few) distinct words are
    cached, and only words with digits meet the regex, which keeps the per-line cost
    to a split, a few dict lookups and a join."""
    out: list[str] = []
    for word in message.split():
        masked = mask_word(word)
        if out and out[-1] == WILDCARD:
            if masked == WILDCARD:
                continue
            bare = word.rstrip(",;.)")
            if bare in _UNITS:
                out[-1] = WILDCARD + word[len(bare):]
                continue
        if masked == WILDCARD:
            while out and out[-1] in _CALENDAR:  # `Sat Jun <*>`: the names were the date
                out.pop()
            if out and out[-1] == WILDCARD:
                continue
        out.append(masked)
    return " ".join(out)
