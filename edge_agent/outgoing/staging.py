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

Calculator state (issue 22): a message staged with ``state=``, the intervals of
:meth:`OutboxStaging.stage_intervals` and the states of :meth:`OutboxStaging.depends_on`
are committed in the same transaction as the messages, with the states snapshotted
when the flush takes them (:mod:`.derived`); flushes never overlap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from edge_agent.buffer import Buffer, MessageKind, Outgoing
from edge_agent.errors import StorageFull
from edge_agent.ops.events import Event, EventLog
from edge_agent.outgoing.derived import DerivedRows, StateSource
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
        self.derived = DerivedRows(max_held)
        self._lock = asyncio.Lock()

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
        retain: bool = False,
        state: StateSource | None = None,
    ) -> None:
        """Stage one message (priority from its kind); :meth:`flush` commits all at once.

        ``state``: the calculator state the message derives from (committed with it).
        """
        if state is not None:
            self.derived.depends_on(state)
        self.held.append(
            Outgoing(
                kind=kind,
                topic=topic,
                data=data,
                priority=kind.priority,
                record_key=record_key,
                retain=retain,
            )
        )

    def depends_on(self, state: StateSource) -> None:
        """Commit a snapshot of this calculator state with the next flush."""
        self.derived.depends_on(state)

    def stage_intervals(
        self, machine: str, intervals: list[Mapping[str, Any]], state: StateSource
    ) -> None:
        """Stage closed state intervals drained from the calculator ``state`` describes."""
        self.derived.add_intervals(machine, intervals, state)

    @property
    def pending(self) -> bool:
        """Whether anything (messages, intervals, calculator state) waits for a flush."""
        return bool(self.held) or self.derived.pending

    async def flush(self) -> bool:
        """Commit every staged message to the outbox in one transaction (one fsync).

        Returns:
            True when nothing is left staged (all committed), False when messages are
            held for the next attempt.
        """
        async with self._lock:
            return await self._flush()

    async def _flush(self) -> bool:
        if not self.pending:
            return True
        batch, self.held = self.held, []
        derived = self.derived.take()
        try:
            await self.buffer.publish_many(batch, **derived.kwargs())
        except StorageFull as exc:
            self.derived.give_back(derived)
            self.held = batch + self.held
            self.events.enter(Event.OUTBOX_FULL, reason=str(exc), held=len(self.held))
            self._trim()
            return False
        except Exception as exc:
            self.derived.give_back(derived)
            self.held = batch + self.held
            self.events.enter(Event.FLUSH_FAILED, "outbox", exc_info=exc, held=len(self.held))
            self._trim()
            return False
        self.events.leave(Event.OUTBOX_FULL, stored=len(batch))
        self.events.leave(Event.OUTBOX_DROPPED)
        self.events.leave(Event.FLUSH_FAILED, "outbox")
        for m in batch:
            self.published[m.kind] = self.published.get(m.kind, 0) + 1
        return not self.pending

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
