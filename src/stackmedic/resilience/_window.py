"""Sliding windows of call outcomes for the circuit breaker.

Both windows keep running totals so that recording a call and reading the failure
and slow-call rates are O(1) and allocation-free: the count-based window is a ring
of outcome codes, the time-based one a ring of one-second buckets that are expired
lazily when the clock moves on. Neither is thread-safe: the breaker holds its lock.
"""

from __future__ import annotations

import itertools
from typing import Protocol

__all__ = ["FAILED", "SLOW", "CountWindow", "TimeWindow", "Window"]

# An outcome is a bit set, so a slow failure counts once as each.
FAILED = 1
SLOW = 2


class Window(Protocol):
    calls: int
    failures: int
    slow: int

    def record(self, outcome: int, now: float, index: int | None = None) -> None: ...

    def expire(self, now: float) -> None: ...

    def reset(self) -> None: ...


class CountWindow:
    """The last `size` calls.

    Slots are claimed with `next(seq)` (atomic in CPython), which lets the breaker
    skip its lock for the common case of a success replacing a success: nothing
    changes then but the position. Anything else goes through `record` under the lock.
    """

    __slots__ = ("calls", "failures", "ring", "seq", "size", "slow")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("window size must be at least 1")
        self.size = size
        self.reset()

    def reset(self) -> None:
        # -1 marks an empty slot so the first `size` calls do not evict anything.
        self.ring = [-1] * self.size
        self.seq = itertools.count()
        self.calls = self.failures = self.slow = 0

    def record(self, outcome: int, now: float, index: int | None = None) -> None:
        i = next(self.seq) % self.size if index is None else index
        old = self.ring[i]
        if old < 0:
            self.calls += 1
        else:
            self.failures -= old & FAILED
            self.slow -= (old & SLOW) >> 1
        self.ring[i] = outcome
        self.failures += outcome & FAILED
        self.slow += (outcome & SLOW) >> 1

    def expire(self, now: float) -> None:
        """Count windows never expire."""


class TimeWindow:
    """The calls of the last `seconds` whole seconds (one bucket per second)."""

    __slots__ = ("_buckets", "_epoch", "calls", "failures", "seconds", "slow")

    def __init__(self, seconds: int) -> None:
        if seconds < 1:
            raise ValueError("window must be at least 1 second")
        self.seconds = seconds
        self.reset()

    def reset(self) -> None:
        # Each bucket: [calls, failures, slow]; `_epoch` is the newest second seen.
        self._buckets = [[0, 0, 0] for _ in range(self.seconds)]
        self._epoch = -1
        self.calls = self.failures = self.slow = 0

    def expire(self, now: float) -> None:
        epoch = int(now)
        if epoch <= self._epoch:
            return
        if self._epoch < 0 or epoch - self._epoch >= self.seconds:
            stale = range(self.seconds)
        else:
            stale = range(self._epoch + 1, epoch + 1)
        for second in stale:
            bucket = self._buckets[second % self.seconds]
            self.calls -= bucket[0]
            self.failures -= bucket[1]
            self.slow -= bucket[2]
            bucket[0] = bucket[1] = bucket[2] = 0
        self._epoch = epoch

    def record(self, outcome: int, now: float, index: int | None = None) -> None:
        self.expire(now)
        bucket = self._buckets[self._epoch % self.seconds]
        failed, slow = outcome & FAILED, (outcome & SLOW) >> 1
        bucket[0] += 1
        bucket[1] += failed
        bucket[2] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow
