"""A mergeable log-bucket quantile sketch with bounded relative error (DDSketch's idea).

A value x > 0 goes to bucket ceil(log_gamma(x)) with gamma = (1 + a) / (1 - a); every
value in a bucket is within relative error `a` of the bucket's representative
2 * gamma^i / (gamma + 1), so any quantile is too. Buckets are a plain dict, so two
sketches merge by adding counts (per-slice sketches of a sliding window, or sketches
from several processes). 1% accuracy over 1 µs..1 h needs ~1,100 buckets at most.

Why not the `ddsketch` package: the same guarantee is thirty lines, and a service
should not need a dependency for it. bench/bench_latency.py measured `add()` at 366 ns
against ddsketch's 546 ns (same errors: 0.96% / 0.49% / 0.39% at p50/p95/p99) and
hdrhistogram's 907 ns.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

__all__ = ["LogSketch"]

_log, _ceil = math.log, math.ceil
# Values below this (in the caller's unit; seconds for latencies) count as zero.
_MIN_VALUE = 1e-9


class LogSketch:
    """Counts of values by log bucket; `quantile(q)` within `alpha` relative error."""

    __slots__ = ("_gamma", "_mult", "alpha", "buckets", "max", "sum", "zeros")

    def __init__(self, alpha: float = 0.01) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        self.alpha = alpha
        self._gamma = (1 + alpha) / (1 - alpha)
        self._mult = 1.0 / math.log(self._gamma)
        self.clear()

    def clear(self) -> None:
        self.buckets: defaultdict[int, int] = defaultdict(int)
        self.zeros = 0
        self.sum = 0.0
        self.max = 0.0

    @property
    def count(self) -> int:
        return self.zeros + sum(self.buckets.values())

    def add(self, value: float) -> None:
        """Count one value (negative values count as zero).

        Only what a quantile needs is kept per value (no count, no min): every
        attribute update here is a measurable share of the cost.
        """
        if value > _MIN_VALUE:
            self.buckets[_ceil(_log(value) * self._mult)] += 1
        else:
            self.zeros += 1
        self.sum += value
        if value > self.max:
            self.max = value

    def merge(self, other: LogSketch) -> None:
        """Add `other`'s counts to this sketch (both must have the same alpha)."""
        if other.alpha != self.alpha:
            raise ValueError("cannot merge sketches of different accuracy")
        for key, n in list(other.buckets.items()):
            self.buckets[key] += n
        self.zeros += other.zeros
        self.sum += other.sum
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 <= q <= 1), or None when the sketch is empty."""
        count = self.count
        if count == 0:
            return None
        rank = q * (count - 1)
        seen = self.zeros
        if rank < seen:
            return 0.0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen > rank:
                estimate = 2.0 * self._gamma ** key / (self._gamma + 1.0)
                return min(estimate, self.max)
        return self.max

    def to_dict(self) -> dict[str, Any]:
        """Buckets and totals as JSON, so another process can merge them."""
        return {"alpha": self.alpha, "count": self.count, "sum": self.sum,
                "max": self.max, "zeros": self.zeros,
                "buckets": {str(k): n for k, n in sorted(self.buckets.items())}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogSketch:
        sketch = cls(float(data["alpha"]))
        sketch.buckets.update({int(k): int(n) for k, n in data["buckets"].items()})
        sketch.zeros = int(data["zeros"])
        sketch.sum, sketch.max = float(data["sum"]), float(data["max"])
        return sketch
