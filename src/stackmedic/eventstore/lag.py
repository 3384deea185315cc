"""How far behind the head each projection is, in events and in time.

States: `healthy`, `warning` (oldest unprocessed event older than 5 minutes),
`critical` (30 minutes), `stalled` (never ran, or the checkpoint has not moved for
`stall_after` while an unprocessed event has been waiting at least as long), `ahead`
(the checkpoint points past the last stored event: the projection skips every event
until the log grows past it, so this is never "caught up"). The clock is injectable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from stackmedic.eventstore._base import EventStore

__all__ = ["LagMonitor", "LagReport", "LagState"]

LagState = Literal["healthy", "warning", "critical", "stalled", "ahead"]


@dataclass(frozen=True)
class LagReport:
    projection: str
    state: LagState
    head: int
    checkpoint: int | None
    lag_events: int
    lag_seconds: float
    checkpoint_updated_at: datetime | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        stamp = self.checkpoint_updated_at
        data["checkpoint_updated_at"] = stamp.isoformat() if stamp else None
        return data


class LagMonitor:
    """Classifies projection lag; thresholds in seconds."""

    def __init__(self, store: EventStore, *, warning: float = 300.0, critical: float = 1800.0,
                 stall_after: float = 300.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.warning = warning
        self.critical = critical
        self.stall_after = stall_after
        self.clock = clock

    def check(self, name: str) -> LagReport:
        """The lag of the projection whose checkpoint is called `name`."""
        now = self.clock()
        head = self.store.head()
        checkpoint = self.store.checkpoint(name)
        position = checkpoint.position if checkpoint else 0
        # Positions can skip (rolled-back appends on PostgreSQL): an upper bound.
        lag_events = max(0, head - position)
        if checkpoint is not None and position > head:
            return LagReport(name, "ahead", head, position, 0, 0.0, checkpoint.updated_at,
                             f"checkpoint {position} is beyond the head {head}: events "
                             "were lost or restored from an older backup")
        pending = self.store.read_all(after=position, limit=1)
        if not pending:
            return LagReport(name, "healthy", head, position if checkpoint else None, 0, 0.0,
                             checkpoint.updated_at if checkpoint else None, "caught up")
        lag_seconds = max(0.0, (now - pending[0].occurred_at).total_seconds())
        updated = checkpoint.updated_at if checkpoint else None
        state: LagState
        if checkpoint is None or updated is None:
            state, reason = "stalled", "never ran: no checkpoint while events exist"
        elif ((idle := (now - updated).total_seconds()) >= self.stall_after
              and lag_seconds >= self.stall_after):
            # Both: an idle projection whose runner has not yet polled the event that
            # just arrived is not stalled; one that sat on it for `stall_after` is.
            state, reason = "stalled", (f"checkpoint unchanged for {idle:.0f}s while an "
                                        f"event waited {lag_seconds:.0f}s")
        elif lag_seconds >= self.critical:
            state, reason = "critical", f"oldest unprocessed event is {lag_seconds:.0f}s old"
        elif lag_seconds >= self.warning:
            state, reason = "warning", f"oldest unprocessed event is {lag_seconds:.0f}s old"
        else:
            state, reason = "healthy", f"{lag_events} events behind, {lag_seconds:.0f}s"
        return LagReport(name, state, head, position if checkpoint else None, lag_events,
                         lag_seconds, updated, reason)

    def check_all(self) -> list[LagReport]:
        """Every projection that has a checkpoint."""
        return [self.check(c.name) for c in self.store.checkpoints()]
