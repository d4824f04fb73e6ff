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

Derived from calculator state (issue 22): a message staged with ``state=`` (a stop
event, a KPI record) and the state intervals staged with :meth:`OutboxStaging.stage_intervals`
are committed in ONE transaction with a snapshot of the calculator state they derive
from, taken when the flush takes them. A ``kill -9`` therefore leaves either both
(the restarted calculator does not derive them again) or neither (it derives them
again, identically). Flushes are serialised, so a snapshot is never committed ahead
of rows an earlier, failed flush gave back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from edge_agent.buffer import Buffer, MessageKind, Outgoing
from edge_agent.errors import StorageFull
from edge_agent.ops.events import Event, EventLog
from edge_agent.uplink import TopicTemplates

log = logging.getLogger("edge_agent.outgoing")

# Messages held in memory while the outbox cannot be written (disk budget or disk full).
OUTGOING_MAX = 20_000

#: A calculator state that staged rows derive from: its buffer key and a snapshot function.
StateSource = tuple[str, Callable[[], Mapping[str, Any]]]


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
        # Calculator states to commit with the next flush, and intervals derived from them.
        self._states: dict[str, Callable[[], Mapping[str, Any]]] = {}
        self._intervals: list[tuple[str, Mapping[str, Any]]] = []
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
            self.depends_on(state)
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
        key, snapshot = state
        self._states[key] = snapshot

    def stage_intervals(
        self, machine: str, intervals: list[Mapping[str, Any]], state: StateSource
    ) -> None:
        """Stage closed state intervals drained from the calculator ``state`` describes."""
        self._intervals.extend((machine, iv) for iv in intervals)
        self.depends_on(state)

    @property
    def pending(self) -> bool:
        """Whether anything (messages, intervals, calculator state) waits for a flush."""
        return bool(self.held or self._intervals or self._states)

    async def flush(self) -> bool:
        """Commit every staged message to the outbox in one transaction (one fsync).

        The intervals and calculator states staged so far go in the same transaction.

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
        intervals, self._intervals = self._intervals, []
        sources, self._states = self._states, {}
        try:
            # Snapshots now, with the batch taken: they hold exactly what was drained.
            states = _snapshots(sources)
            if states or intervals:
                await self.buffer.publish_many(batch, states=states, intervals=intervals)
            else:
                await self.buffer.publish_many(batch)
        except StorageFull as exc:
            self._give_back(batch, intervals, sources)
            self.events.enter(Event.OUTBOX_FULL, reason=str(exc), held=len(self.held))
            self._trim()
            return False
        except Exception as exc:
            self._give_back(batch, intervals, sources)
            self.events.enter(Event.FLUSH_FAILED, "outbox", exc_info=exc, held=len(self.held))
            self._trim()
            return False
        self.events.leave(Event.OUTBOX_FULL, stored=len(batch))
        self.events.leave(Event.OUTBOX_DROPPED)
        self.events.leave(Event.FLUSH_FAILED, "outbox")
        for m in batch:
            self.published[m.kind] = self.published.get(m.kind, 0) + 1
        return not self.pending

    def _give_back(
        self,
        batch: list[Outgoing],
        intervals: list[tuple[str, Mapping[str, Any]]],
        sources: dict[str, Callable[[], Mapping[str, Any]]],
    ) -> None:
        self.held = batch + self.held
        self._intervals = intervals + self._intervals
        self._states = {**sources, **self._states}

    def _trim(self) -> None:
        surplus = len(self._intervals) - self.max_held
        if surplus > 0:
            # Evidence rows, not the product: the oldest go first, counted.
            del self._intervals[:surplus]
            self.dropped["intervals"] = self.dropped.get("intervals", 0) + surplus
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


def _snapshots(sources: Mapping[str, Callable[[], Mapping[str, Any]]]) -> dict[str, Any]:
    """Each source's snapshot; one that fails is logged and left out (never blocks the outbox)."""
    states: dict[str, Any] = {}
    for key, snapshot in sources.items():
        try:
            states[key] = snapshot()
        except Exception:
            log.exception("Calculator state not saved, snapshot failed: key=%s", key)
    return states
