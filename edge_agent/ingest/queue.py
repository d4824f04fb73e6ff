"""The drivers' sink: a bounded queue between the link tasks and the dispatcher.

Link tasks call :meth:`IngestQueue.put_readings` and :meth:`IngestQueue.put_comms`
and never wait: a PLC poll must not be held up by anything downstream. The
dispatcher awaits :meth:`IngestQueue.get`.

Bound and full-queue behaviour, stated in ``[ingest]`` (:class:`IngestConfig`):
at most ``queue_max_batches`` reading batches wait; when the queue is full,
``when_full = "drop_newest"`` (default) drops the batch being put, ``"drop_oldest"``
the oldest batch waiting (fresher data wins). Either way the readings are counted
(event ``queue_full``: one log line when the queue fills, one when it is below half
again). Comms events are not subject to that bound: they are rare, small, and losing
one would turn known state into wrong state; a separate bound of
:data:`COMMS_MAX` guards against a flapping device while the dispatcher is stuck.
Confirmations (report-by-exception sources saying their last values still hold) count
against the batch bound; one that finds the queue full is dropped uncounted, since it
carries no data and the next one follows within a publish interval.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from edge_agent.columns import ColumnPoll
from edge_agent.ingest.config import IngestConfig, WhenFull
from edge_agent.model import CommsEvent, Confirmation, Reading
from edge_agent.ops.events import Event, EventLog

COMMS_MAX = 10_000

#: A batch of readings (a :class:`ColumnPoll` as it came, other sequences as a list
#: copy), a comms event or a confirmation.
Item = list[Reading] | ColumnPoll | CommsEvent | Confirmation


class IngestQueue:
    """Bounded hand-over from the links to the dispatcher (see module docstring).

    Args:
        config: Bound and full-queue behaviour.
        events: Where drops are counted and logged.
    """

    def __init__(self, config: IngestConfig | None = None, events: EventLog | None = None) -> None:
        self.config = config or IngestConfig()
        self.events = events or EventLog()
        self._items: deque[Item] = deque()
        self._batches = 0
        self._comms = 0
        self._ready = asyncio.Event()
        self.dropped_readings = 0
        self.dropped_events = 0

    def put_readings(self, readings: Sequence[Reading]) -> None:
        """Queue one batch; never blocks the driver."""
        if self._batches >= self.config.queue_max_batches and (
            self.config.when_full is WhenFull.DROP_NEWEST or not self._drop_oldest()
        ):
            self._dropped(len(readings))
            return
        # A ColumnPoll is kept as it is (immutable by convention, copying would build
        # its readings); any other sequence is copied, the driver may reuse it.
        self._items.append(readings if type(readings) is ColumnPoll else list(readings))
        self._batches += 1
        self._ready.set()

    def _drop_oldest(self) -> bool:
        for i, item in enumerate(self._items):
            if isinstance(item, list | ColumnPoll):  # the oldest batch of readings
                del self._items[i]
                self._batches -= 1
                self._dropped(len(item))
                return True
        return False

    def _dropped(self, n: int) -> None:
        self.dropped_readings += n
        self.events.enter(
            Event.QUEUE_FULL, count=n, queue_max_batches=self.config.queue_max_batches
        )

    def put_confirmation(self, confirmation: Confirmation) -> None:
        """Queue a confirmation of unchanged values; never blocks the driver."""
        if self._batches >= self.config.queue_max_batches:
            return
        self._items.append(confirmation)
        self._batches += 1
        self._ready.set()

    def put_comms(self, event: CommsEvent) -> None:
        """Queue a comms event; never blocks the driver."""
        if self._comms >= COMMS_MAX:
            self.dropped_events += 1
            self.events.enter(Event.QUEUE_FULL, count=1, comms_max=COMMS_MAX)
            return
        self._items.append(event)
        self._comms += 1
        self._ready.set()

    async def get(self) -> Item:
        """The oldest item, waiting for one."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self.get_nowait()
        assert item is not None  # noqa: S101 - checked above, nothing awaited since
        return item

    def get_nowait(self) -> Item | None:
        """The oldest item, or ``None`` when the queue is empty."""
        if not self._items:
            return None
        item = self._items.popleft()
        if not isinstance(item, CommsEvent):
            self._batches -= 1
            if self._batches < self.config.queue_max_batches // 2:
                self.events.leave(Event.QUEUE_FULL)
        else:
            self._comms -= 1
        return item

    def __len__(self) -> int:
        return len(self._items)

    def figures(self) -> dict[str, int]:
        """Drops and depth, for health telemetry's ``pipeline``."""
        return {
            "dropped_readings": self.dropped_readings,
            "dropped_events": self.dropped_events,
            "queue_depth": len(self._items),
        }
