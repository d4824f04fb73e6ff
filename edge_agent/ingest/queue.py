"""The drivers' sink: a bounded queue between the link tasks and the dispatcher.

Link tasks call :meth:`IngestQueue.put_readings` and :meth:`IngestQueue.put_comms`
and never wait: a PLC poll must not be held up by anything downstream. The
dispatcher awaits :meth:`IngestQueue.get`.

Guarantees: at most ``max_batches`` items wait; when the queue is full the newest
batch is dropped and counted (``dropped_readings``, ``dropped_events``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from edge_agent.model import CommsEvent, Reading

QUEUE_MAX_ITEMS = 10_000

Item = list[Reading] | CommsEvent


class IngestQueue:
    """Bounded hand-over from the links to the dispatcher; full means drop-newest, counted."""

    def __init__(self, max_batches: int = QUEUE_MAX_ITEMS) -> None:
        self.max_batches = max_batches
        self._queue: asyncio.Queue[Item] = asyncio.Queue(max_batches)
        self.dropped_readings = 0
        self.dropped_events = 0

    def put_readings(self, readings: Sequence[Reading]) -> None:
        """Queue one batch; never blocks the driver."""
        try:
            self._queue.put_nowait(list(readings))
        except asyncio.QueueFull:
            self.dropped_readings += len(readings)

    def put_comms(self, event: CommsEvent) -> None:
        """Queue a comms event; never blocks the driver."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped_events += 1

    async def get(self) -> Item:
        """The oldest item, waiting for one."""
        return await self._queue.get()

    def get_nowait(self) -> Item | None:
        """The oldest item, or ``None`` when the queue is empty."""
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def __len__(self) -> int:
        return self._queue.qsize()
