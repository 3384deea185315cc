"""Error-rate spikes: windows whose count jumps well above a robust baseline.

The baseline of a window is the median of the preceding `history` windows (empty
windows count as zero), its spread the median absolute deviation (MAD, scaled by
1.4826 to estimate a standard deviation, floored at 1 line). A window is a spike
when it has at least `min_count` lines and exceeds the baseline by `sigmas`
spreads; its strength is `count / max(baseline, 1)`, which the thresholds of
`logs.error_rate.spike` grade (3x warning, 10x critical by default). Median and MAD
ignore the occasional burst that a mean and standard deviation would absorb.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Spike", "SpikeSettings", "find_spikes"]


@dataclass(frozen=True)
class SpikeSettings:
    """How spikes are found; the defaults suit per-minute error counts."""

    window: float = 60.0
    history: int = 30
    min_history: int = 3
    min_count: int = 10
    sigmas: float = 3.0


@dataclass(frozen=True)
class Spike:
    """One window that stands out: its start, count, baseline and strength."""

    window_start: datetime
    window_seconds: float
    count: int
    baseline: float
    spread: float

    @property
    def factor(self) -> float:
        return self.count / max(self.baseline, 1.0)

    @property
    def rate_per_minute(self) -> float:
        return self.count * 60.0 / self.window_seconds

    def as_evidence(self) -> dict[str, object]:
        return {"window_start": self.window_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "window_seconds": self.window_seconds, "count": self.count,
                "rate_per_minute": round(self.rate_per_minute, 2),
                "baseline": round(self.baseline, 2), "spread": round(self.spread, 2),
                "factor": round(self.factor, 2)}


def find_spikes(counts: Counter[int], settings: SpikeSettings = SpikeSettings()) -> list[Spike]:
    """Every spike window in `counts`, oldest first."""
    if not counts:
        return []
    first = min(counts)
    spikes = []
    # Only windows that could be spikes are visited, and only their history is read:
    # one stray timestamp years away (a bad clock, epoch 0) must not make the work or
    # the memory grow with the number of empty windows in between.
    for index in sorted(i for i, c in counts.items() if c >= settings.min_count):
        if index - first < settings.min_history:
            continue
        count = counts[index]
        past = [counts.get(i, 0) for i in range(max(first, index - settings.history), index)]
        baseline = statistics.median(past)
        spread = max(1.4826 * statistics.median(abs(x - baseline) for x in past), 1.0)
        if count > baseline + settings.sigmas * spread:
            start = datetime.fromtimestamp(index * settings.window, UTC)
            spikes.append(Spike(start, settings.window, count, baseline, spread))
    return spikes
