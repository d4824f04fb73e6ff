"""Outbox staging: messages wait here until one commit stores them in the outbox.

Producers (the dispatcher's stop events, the reporter's KPI records, health and
telemetry) call :meth:`OutboxStaging.stage`, which never blocks; :meth:`OutboxStaging.flush`
commits everything staged in one transaction (one fsync). When the disk budget or
the disk is full (event ``outbox_full``), or the commit fails otherwise (event
``flush_failed``, stage ``outbox``), the messages stay here and are retried on the
next flush.

Guarantees: a message is either committed to the outbox, still staged, or counted
as dropped (event ``outbox_dropped`` and :attr:`OutboxStaging.dropped`); beyond
``max_held`` staged messages the lowest-priority, oldest ones are dropped, never a
KPI record or a stop event.
"""

from __future__ import annotations

import logging
from typing import Any

from edge_agent.buffer import Buffer, MessageKind, Outgoing
from edge_agent.errors import StorageFull
from edge_agent.ops.events import Event, EventLog
from edge_agent.uplink import TopicTemplates

log = logging.getLogger("edge_agent.outgoing")

# Messages held in memory while the outbox cannot be written (disk budget or disk full).
OUTGOING_MAX = 20_000


class OutboxStaging:
    """Messages staged for the outbox, committed together.

    Args:
        buffer: The opened buffer whose outbox receives the messages.
        topics: Topic templates of the current uplink (replaced when ``[mqtt]`` changes).
        events: Where full-outbox conditions and drops are counted and logged.
        max_held: Bound on staged messages while the outbox cannot be written.
    """

    def __init__(
        self,
        buffer: Buffer,
        topics: TopicTemplates,
        events: EventLog | None = None,
        max_held: int = OUTGOING_MAX,
    ) -> None:
        self.buffer = buffer
        self.topics = topics
        self.events = events or EventLog()
        self.max_held = max_held
        self.held: list[Outgoing] = []
        self.dropped: dict[str, int] = {}
        self.published: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.held)

    def figures(self) -> dict[str, int]:
        """Messages held and dropped, for health telemetry's ``pipeline``."""
        return {
            "outgoing_in_memory": len(self.held),
            "dropped_outgoing": sum(self.dropped.values()),
        }

    def stage(
        self,
        kind: MessageKind,
        topic: str,
        data: dict[str, Any] | str,
        *,
        record_key: str | None = None,
    ) -> None:
        """Stage one message (priority from its kind); :meth:`flush` commits all at once."""
        self.held.append(
            Outgoing(
                kind=kind, topic=topic, data=data, priority=kind.priority, record_key=record_key
            )
        )

    async def flush(self) -> bool:
        """Commit every staged message to the outbox in one transaction (one fsync).

        Returns:
            True when nothing is left staged (all committed), False when messages are
            held for the next attempt.
        """
        if not self.held:
            return True
        batch, self.held = self.held, []
        try:
            await self.buffer.publish_many(batch)
        except StorageFull as exc:
            self.held = batch + self.held
            self.events.enter(Event.OUTBOX_FULL, reason=str(exc), held=len(self.held))
            self._trim()
            return False
        except Exception as exc:
            self.held = batch + self.held
            self.events.enter(Event.FLUSH_FAILED, "outbox", exc_info=exc, held=len(self.held))
            self._trim()
            return False
        self.events.leave(Event.OUTBOX_FULL, stored=len(batch))
        self.events.leave(Event.OUTBOX_DROPPED)
        self.events.leave(Event.FLUSH_FAILED, "outbox")
        for m in batch:
            self.published[m.kind] = self.published.get(m.kind, 0) + 1
        return not self.held

    def _trim(self) -> None:
        excess = len(self.held) - self.max_held
        if excess <= 0:
            return
        # Largest priority number = least important; oldest first within it.
        order = sorted(
            (i for i, m in enumerate(self.held) if MessageKind(m.kind).evictable),
            key=lambda i: (-self.held[i].priority, i),
        )
        drop = set(order[:excess])
        for i in drop:
            kind = self.held[i].kind
            self.dropped[kind] = self.dropped.get(kind, 0) + 1
        self.held = [m for i, m in enumerate(self.held) if i not in drop]
        if drop:
            self.events.enter(Event.OUTBOX_DROPPED, count=len(drop), max_held=self.max_held)
