"""Outbox staging: messages wait here until a commit stores them in the outbox.

Producers (the dispatcher's stop events, the reporter's KPI records, health and
telemetry) call :meth:`OutboxStaging.stage`, which never blocks; :meth:`OutboxStaging.flush`
commits everything staged in one transaction (one fsync). Flushes never overlap
(one at a time, in staging order), and a flush whose caller is cancelled (a task
stopped mid-commit) still finishes: no batch is lost between memory and disk.

When the outbox cannot take the whole batch (disk budget full of rows that are
never evicted, or the disk itself; event ``outbox_full``), the messages are stored
as far as they fit, most important first (KPI records, stop events and the other
summaries, then health, then telemetry), in growing chunks: the first message
alone, then 2, 4 ... so one large batch never blocks the small ones behind it.
What does not fit is *held* in memory and retried at every flush; the
condition ends (one log line) when nothing is held any more. A held KPI record
replaced by a newer version of the same record (same ``record_key``: the next
"so far" record of a window) is not stored twice: the older one is *superseded*
and counted. Any other failure (event ``flush_failed``, stage ``outbox``) holds
the messages the same way.

Guarantees: every staged message is stored, still held, superseded, or dropped
and counted (:meth:`OutboxStaging.accounting`, per kind; event ``outbox_dropped``).
The hold is bounded by ``max_held``: beyond it the least important, oldest
messages are dropped, summaries only when nothing else is left (so-far KPI
records first). :meth:`OutboxStaging.close` (at the stop) makes a last attempt,
then counts and logs what it could not store. What a ``kill -9`` takes with it is
counted at the next start (:meth:`OutboxStaging.recover_hold`, event ``held_lost``)
from the hold mark kept after every flush (:mod:`.holdmark`). State intervals
waiting with a refused commit are bounded by ``max_held`` too; those dropped are
counted (event ``intervals_dropped``, ``dropped_intervals`` in :meth:`figures`).

Calculator state (issue 22): a message staged with ``state=``, the intervals of
:meth:`OutboxStaging.stage_intervals` and the states of :meth:`OutboxStaging.depends_on`
are committed in the same transaction as the messages, with the states snapshotted
when the flush takes them (:mod:`.derived`). When the batch is stored in pieces,
they go with the last piece: a state is committed only once every message taken
with it is stored (a crash in between derives those messages again, under the same
identity, rather than losing them).

Size: over 400 lines because staging, the chunked store, the put-back, the trim,
the stop and the hold's accounting all mutate the one hold (``_held``) under one lock.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from edge_agent.buffer import Buffer, MessageKind, Outgoing
from edge_agent.buffer.telerefs import FrameRef
from edge_agent.errors import StorageFull
from edge_agent.ops.events import Event, EventLog
from edge_agent.outgoing.derived import DerivedRows, StateSource, Taken
from edge_agent.outgoing.holdmark import HoldMark, PreviousHold
from edge_agent.uplink import TopicTemplates

log = logging.getLogger("edge_agent.outgoing")

# Messages held in memory while the outbox cannot be written (disk budget or disk full).
OUTGOING_MAX = 20_000
_Item = tuple[int, Outgoing]  # (arrival number, message)
# Largest chunk stored at once while the outbox has less room than the whole batch.
CHUNK_MAX = 256


def _kind(m: Outgoing) -> str:
    return MessageKind(m.kind).value


def _is_summary(m: Outgoing) -> bool:
    return not MessageKind(m.kind).evictable


def _instant(t: float | None) -> str:
    """UTC instant of a log line (``2026-11-26T10:00:00Z``), ``?`` when unknown."""
    return "?" if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _is_so_far(m: Outgoing) -> bool:
    return m.kind == MessageKind.KPI and isinstance(m.data, dict) and m.data.get("final") is False


class OutboxStaging:
    """Messages staged for the outbox, committed together.

    Args:
        buffer: The opened buffer whose outbox receives the messages.
        topics: Topic templates of the current uplink (replaced when ``[mqtt]`` changes).
        events: Where full-outbox conditions and drops are counted and logged.
        max_held: Bound on staged messages while the outbox cannot be written.
        hold_mark: Where what is held is recorded for the next start (see
            :mod:`.holdmark`); None: not recorded.
    """

    def __init__(
        self,
        buffer: Buffer,
        topics: TopicTemplates,
        events: EventLog | None = None,
        max_held: int = OUTGOING_MAX,
        hold_mark: HoldMark | None = None,
    ) -> None:
        self.buffer = buffer
        self.topics = topics
        self.events = events or EventLog()
        self.max_held = max_held
        # Staged messages by arrival number (insertion order = staging order).
        self._held: dict[int, Outgoing] = {}
        self._keys: dict[str, int] = {}  # record_key -> arrival number of a held KPI record
        self._numbers = itertools.count()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Future[bool]] = set()  # flushes running (kept referenced)
        self.created: Counter[str] = Counter()
        self.superseded: Counter[str] = Counter()
        self.dropped: dict[str, int] = {}
        self.published: dict[str, int] = {}  # stored in the outbox, per kind
        self._stored_in_hold = 0
        self.derived = DerivedRows(max_held)
        self.hold_mark = hold_mark

    def __len__(self) -> int:
        return len(self._held)

    @property
    def held(self) -> list[Outgoing]:
        """The messages staged and not stored yet, in staging order."""
        return list(self._held.values())

    def figures(self) -> dict[str, int]:
        """Messages held, superseded and dropped, for health telemetry's ``pipeline``."""
        summaries = sum(1 for m in self._held.values() if _is_summary(m))
        return {
            "outgoing_in_memory": len(self._held),
            "summaries_in_memory": summaries,
            "dropped_outgoing": sum(self.dropped.values()),
            "dropped_summaries": sum(
                n for kind, n in self.dropped.items() if not MessageKind(kind).evictable
            ),
            "superseded_outgoing": sum(self.superseded.values()),
            "dropped_intervals": self.derived.dropped,
        }

    def accounting(self) -> dict[str, dict[str, int]]:
        """Per kind: ``created`` = ``stored`` + ``superseded`` + ``dropped`` + ``held``."""
        held: Counter[str] = Counter(_kind(m) for m in self._held.values())
        return {
            "created": dict(self.created),
            "stored": dict(self.published),
            "superseded": dict(self.superseded),
            "dropped": dict(self.dropped),
            "held": dict(held),
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
        frames: FrameRef | None = None,
    ) -> None:
        """Stage one message (priority from its kind); :meth:`flush` commits all at once.

        A held KPI record with the same ``record_key`` is superseded (replaced) by it.
        ``state``: the calculator state the message derives from (committed with it).
        ``frames``: raw telemetry's values as stored frames (stored as a reference).
        """
        if state is not None:
            self.derived.depends_on(state)
        message = Outgoing(
            kind=kind,
            topic=topic,
            data=data,
            priority=kind.priority,
            record_key=record_key,
            retain=retain,
            frames=frames,
        )
        self.created[kind.value] += 1
        self._add(message)

    def _add(self, message: Outgoing, number: int | None = None) -> None:
        n = next(self._numbers) if number is None else number
        key = message.record_key if message.kind == MessageKind.KPI else None
        if key is not None:
            old = self._keys.get(key)
            if old is not None and old in self._held:
                if old > n:
                    # A newer version is already held (a put-back of an older one).
                    self.superseded[_kind(message)] += 1
                    return
                del self._held[old]
                self.superseded[_kind(message)] += 1
            self._keys[key] = n
        self._held[n] = message

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
        return bool(self._held) or self.derived.pending

    async def flush(self) -> bool:
        """Store every staged message in the outbox (one transaction when it fits).

        Returns:
            True when everything staged before the call is committed (a message staged
            while it ran waits for the next flush), False when messages are held for
            the next attempt.
        """
        # Shielded: a caller cancelled mid-commit (the reporter at the stop) must not take
        # the batch with it; the flush finishes and accounts for every message.
        task = asyncio.ensure_future(self._flush_locked())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    async def _flush_locked(self) -> bool:
        async with self._lock:
            done = await self._flush()
            self._mark()
            return done

    def _mark(self) -> None:
        """Keep the hold mark in step with what is held (no I/O when nothing changed)."""
        if self.hold_mark is not None:
            held = Counter(_kind(m) for m in self._held.values())
            self.hold_mark.update(held, self.derived.intervals_waiting)

    def recover_hold(self) -> PreviousHold | None:
        """At start: what the last run held in memory when it ended uncleanly, counted.

        Event ``held_lost``, counting the messages. Window records among them are
        derived again by the restored calculators (see docs/pipeline.md).
        """
        previous = self.hold_mark.take_previous() if self.hold_mark is not None else None
        if previous is None or not (previous.count or previous.intervals):
            return None
        self.events.occurred(
            Event.HELD_LOST,
            count=previous.count,
            kinds=",".join(f"{k}:{n}" for k, n in sorted(previous.held.items())) or "-",
            intervals=previous.intervals,
            since=_instant(previous.since),
        )
        return previous

    def _give_back(self, derived: Taken) -> None:
        """Intervals and states of a refused commit wait for the next; counted over the bound."""
        dropped = self.derived.give_back(derived)
        if dropped:
            self.events.enter(
                Event.INTERVALS_DROPPED, count=dropped, max_held=self.derived.max_intervals
            )

    async def _flush(self) -> bool:
        if not self.pending:
            return True
        batch, self._held, self._keys = self._held, {}, {}
        items = list(batch.items())
        derived = self.derived.take()
        try:
            await self.buffer.publish_many([m for _, m in items], **derived.kwargs())
        except StorageFull as exc:
            rest, committed = await self._store_in_chunks(items, derived)
            self._put_back(rest)
            if rest or not committed:
                self.events.enter(
                    Event.OUTBOX_FULL,
                    reason=str(exc),
                    held=len(self._held),
                    summaries=self.figures()["summaries_in_memory"],
                    state_waiting=not committed,
                )
                self._trim()
                return False
        except Exception as exc:
            self._give_back(derived)
            self._put_back(items)
            self.events.enter(Event.FLUSH_FAILED, "outbox", exc_info=exc, held=len(self._held))
            self._trim()
            return False
        else:
            self._stored(m for _, m in items)
            self._stored_in_hold += len(items)
        self.events.leave(
            Event.OUTBOX_FULL,
            stored=self._stored_in_hold,
            superseded=sum(self.superseded.values()),
        )
        self._stored_in_hold = 0
        self.events.leave(Event.OUTBOX_DROPPED)
        self.events.leave(Event.INTERVALS_DROPPED)
        self.events.leave(Event.FLUSH_FAILED, "outbox")
        return True

    async def _store_in_chunks(
        self, items: list[_Item], derived: Taken
    ) -> tuple[list[_Item], bool]:
        """Store what fits, most important first, in chunks 1, 2, 4 ...

        ``derived`` (states, intervals) is committed after the last message, alone,
        or given back to :attr:`derived` for the next flush.

        Returns:
            The messages not stored, and whether ``derived`` was committed.
        """
        order = sorted(items, key=lambda item: (item[1].priority, item[0]))
        size = 1
        while order:
            chunk = order[:size]
            try:
                await self.buffer.publish_many([m for _, m in chunk])
            except StorageFull:
                if size == 1:
                    break
                size = 1  # a smaller piece may still fit
                continue
            except Exception as exc:
                self.events.enter(Event.FLUSH_FAILED, "outbox", exc_info=exc)
                break
            self._stored(m for _, m in chunk)
            self._stored_in_hold += len(chunk)
            order = order[size:]
            size = min(size * 2, CHUNK_MAX)
        extra = derived.kwargs()
        committed = not extra
        if not order and extra:
            try:
                await self.buffer.publish_many([], **extra)
            except Exception:  # given back, retried with the next flush
                committed = False
            else:
                committed = True
        if not committed:
            self._give_back(derived)
        return sorted(order), committed

    def _stored(self, messages: Any) -> None:
        for m in messages:
            self.published[_kind(m)] = self.published.get(_kind(m), 0) + 1

    def _put_back(self, items: list[_Item]) -> None:
        """Hold ``items`` again before what was staged meanwhile (coalescing KPI records)."""
        newer, self._held, self._keys = self._held, {}, {}
        for n, m in [*items, *newer.items()]:
            self._add(m, n)

    def _trim(self) -> None:
        excess = len(self._held) - self.max_held
        if excess <= 0:
            return

        # Least important first: evictable kinds by priority, then so-far KPI records,
        # then every other summary; oldest first within each.
        def rank(item: tuple[int, Outgoing]) -> tuple[int, int, int]:
            n, m = item
            tier = 0 if not _is_summary(m) else 1 if _is_so_far(m) else 2
            return (tier, -m.priority, n)

        drop = sorted(self._held.items(), key=rank)[:excess]
        kinds: Counter[str] = Counter()
        for n, m in drop:
            del self._held[n]
            kinds[_kind(m)] += 1
            self.dropped[_kind(m)] = self.dropped.get(_kind(m), 0) + 1
        summaries = sum(n for kind, n in kinds.items() if not MessageKind(kind).evictable)
        self.events.enter(
            Event.OUTBOX_DROPPED,
            count=len(drop),
            max_held=self.max_held,
            summaries=summaries,
        )
        if summaries:
            log.error(
                "Summaries dropped from memory, the outbox could not take them count=%d kinds=%s",
                summaries,
                ",".join(f"{k}:{v}" for k, v in sorted(kinds.items())),
            )

    async def close(self) -> int:
        """At the stop: a last attempt to store what is held; the rest is counted as dropped.

        Returns:
            How many messages could not be stored (logged once, with their kinds).
        """
        await self.flush()
        if not self._held:
            return 0
        kinds: Counter[str] = Counter(_kind(m) for m in self._held.values())
        for kind, n in kinds.items():
            self.dropped[kind] = self.dropped.get(kind, 0) + n
        count = len(self._held)
        self._held, self._keys = {}, {}
        if self.hold_mark is not None:
            self.hold_mark.clear()  # accounted for here: not lost uncounted
        # Counted under outbox_dropped; the line below says it (not the over-the-bound one).
        self.events.counters[Event.OUTBOX_DROPPED] += count
        log.error(
            "Stopping with messages the outbox did not take messages=%d summaries=%d kinds=%s",
            count,
            sum(n for kind, n in kinds.items() if not MessageKind(kind).evictable),
            ",".join(f"{k}:{v}" for k, v in sorted(kinds.items())),
        )
        return count
