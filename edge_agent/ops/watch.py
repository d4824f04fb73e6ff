"""The watch: figures other parts keep, turned into catalogue events once a second.

The buffer's writer thread counts what it evicts under the disk budget and what
it drops (its queue or its RAM hold full); the clock is synchronised or not. Those
parts do not log every change themselves, so :class:`Watch` compares their
counters once a second and enters ``budget_eviction`` and ``buffer_dropped`` when
they grow, leaves them after :data:`QUIET_S` without growth (one line in and one
out per episode, not per burst), and follows ``clock_unsynced``. It only reads: no state of its own
beyond the last counts seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from edge_agent.buffer import Buffer
from edge_agent.ops.clock import ClockWatch
from edge_agent.ops.events import Event, EventLog

WATCH_S = 1.0
# A condition ends after this long without a new eviction or drop: eviction comes in
# bursts (down to the low-water mark, then none until the high-water mark), and one
# line in and one out per burst would flood the journal during a long outage.
QUIET_S = 30.0
# Drop-count keys of rows deleted under the budget (evicted outbox rows; superseded
# so-far KPI rows), as opposed to rows the writer could not keep ("<table>:<reason>").
_EVICTED = ("outbox:", "superseded:")


def evicted_rows(dropped: Mapping[str, int]) -> int:
    """Rows the buffer deleted to stay under its disk budget (``buffer.stats()["dropped"]``)."""
    return sum(n for k, n in dropped.items() if ":" not in k or k.startswith(_EVICTED))


def dropped_rows(dropped: Mapping[str, int]) -> int:
    """Rows the buffer could not keep: its queue or RAM hold full, or written after close."""
    return sum(n for k, n in dropped.items() if ":" in k and not k.startswith(_EVICTED))


class Watch:
    """Turns the buffer's drop counters and the clock status into events.

    Args:
        buffer: The opened buffer.
        clock: The clock status (its changes become ``clock_unsynced`` events).
        events: The catalogue.
    """

    def __init__(
        self, buffer: Buffer, clock: ClockWatch, events: EventLog, *, quiet_s: float = QUIET_S
    ) -> None:
        self.buffer = buffer
        self.clock = clock
        self.events = events
        self.quiet_s = quiet_s
        self._evicted = 0
        self._dropped = 0
        self._last_growth: dict[Event, float] = {}

    async def run(self, interval_s: float = WATCH_S) -> None:
        """Check every ``interval_s`` seconds until cancelled."""
        while True:
            self.check()
            await asyncio.sleep(interval_s)

    def check(self) -> None:
        """Compare the counters with the last check and enter or leave the conditions."""
        self.clock.synced(time.monotonic())
        if not self.buffer.is_open:
            return
        dropped = self.buffer.stats()["dropped"]
        now = time.monotonic()
        for event, total, last in (
            (Event.BUDGET_EVICTION, evicted_rows(dropped), self._evicted),
            (Event.BUFFER_DROPPED, dropped_rows(dropped), self._dropped),
        ):
            if total > last:
                self.events.enter(event, count=total - last)
                self._last_growth[event] = now
            elif now - self._last_growth.get(event, -self.quiet_s) >= self.quiet_s:
                self.events.leave(event)
        self._evicted, self._dropped = evicted_rows(dropped), dropped_rows(dropped)
