"""`stackmedic logs tail`: follow files and summarise each interval as it passes.

One thread per file follows it across rotation and truncation
(`stackmedic.logs.readers.follow`); every `interval` seconds the lines gathered are
counted, their levels read with the file's detected layout, and the signatures
matched, giving one summary line per interval.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from stackmedic.logs.matcher import make_matcher
from stackmedic.logs.readers import ReadStats, follow
from stackmedic.logs.signatures import load_packs
from stackmedic.logs.source import detect_file

__all__ = ["tail_summary"]

QUEUE_LINES = 100_000
"""Lines waiting for the next summary; a reader that gets ahead (`--from-start` on a
large file) waits, so memory stays bounded whatever the file size."""


def tail_summary(paths: Sequence[str], *, interval: float = 5.0, duration: float | None = None,
                 from_start: bool = False, packs: Sequence[str] = ()) -> Iterator[str]:
    """One summary line per interval: lines, error lines and signature hits, per file set.
    Runs until `duration` seconds have passed (forever if None)."""
    signatures = load_packs(list(packs))
    matcher = make_matcher([(i, p) for i, s in enumerate(signatures) for p in s.patterns])
    layouts = {path: detect_file(path) for path in paths}
    lines: queue.Queue[tuple[str, str]] = queue.Queue(QUEUE_LINES)
    stop = threading.Event()
    stats = ReadStats()

    def pump(path: str) -> None:
        for line in follow(path, poll=min(0.5, interval / 4), from_start=from_start,
                           stop=stop.is_set, stats=stats):
            while not stop.is_set():
                try:
                    lines.put((path, line), timeout=0.2)
                    break
                except queue.Full:
                    continue

    threads = [threading.Thread(target=pump, args=(p,), daemon=True) for p in paths]
    for thread in threads:
        thread.start()
    end = None if duration is None else time.monotonic() + duration
    warned = 0
    try:
        while end is None or time.monotonic() < end:
            time.sleep(interval if end is None else max(0.0, min(interval,
                                                                end - time.monotonic())))
            batch = _drain(lines)
            errors = sum(1 for path, text in batch
                         if (record := layouts[path].parse(text)) is not None
                         and record.is_error)
            hits: Counter[str] = Counter()
            if batch:
                chunk = "\n".join(text for _, text in batch).encode("utf-8", "replace")
                for _, _, sig in matcher.scan(chunk):
                    hits[signatures[sig].id] += 1
            stamp = datetime.now(UTC).strftime("%H:%M:%SZ")
            detail = "  ".join(f"{name}={count}" for name, count in hits.most_common(5))
            yield f"{stamp}  lines={len(batch)}  errors={errors}" + (f"  {detail}" if detail
                                                                       else "")
            for warning in stats.warnings[warned:]:
                yield f"{stamp}  note: {warning}"
            warned = len(stats.warnings)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=2.0)


def _drain(lines: queue.Queue[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    while True:
        try:
            out.append(lines.get_nowait())
        except queue.Empty:
            return out
