"""The health message: host and pipeline figures, staged every ``[health] interval_s``.

:class:`HealthReport` takes one sample from the
:class:`~edge_agent.ops.health.HealthCollector` (process and host figures, plus
the slots the runtime registered: buffer, uplink, devices, the event catalogue's
counters, the ingest queue) and stages it for the outbox as a ``health`` message,
then tells systemd a one-line status. The payload is ``schemas/health.schema.json``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edge_agent.buffer import MessageKind
from edge_agent.ops import sdnotify
from edge_agent.ops.health import HealthCollector
from edge_agent.outgoing.staging import OutboxStaging


class HealthReport:
    """Stages health messages.

    Args:
        collector: Takes the sample.
        staging: Where the message is staged and committed.
        status_line: The one-line status for systemd (``STATUS=``).
    """

    def __init__(
        self,
        collector: HealthCollector,
        staging: OutboxStaging,
        status_line: Callable[[], str],
    ) -> None:
        self.collector = collector
        self.staging = staging
        self.status_line = status_line

    async def run(self, interval_s: Callable[[], float]) -> None:
        """Publish every ``interval_s()`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s())
            await self.publish()
            sdnotify.status(self.status_line())

    async def publish(self) -> None:
        """Stage one health message and commit it to the outbox."""
        data = self.collector.collect()
        self.staging.stage(MessageKind.HEALTH, self.staging.topics.health(), data)
        await self.staging.flush()
