"""Priority-aware read-ahead for the uplink: which outbox rows to send next, and in what order.

What it does: for one connection it keeps the rows fetched but not yet sent in
*lanes*, one per priority class (two per class with ``live_first``: the backlog
that existed when the connection came up, and newer rows), says which lanes need
a database read (:meth:`DrainQueue.queries`), absorbs the results, and picks the
next rows to send (:meth:`DrainQueue.take`).

The rule (documented in ``docs/pipeline.md``):

* **Most important first.** A smaller ``priority`` number wins: KPI records and
  stop events (0) before health (5) before telemetry (9).
* **Strict ``seq`` order within a class** (``oldest_first``). With ``live_first``
  the class's new rows and its backlog alternate (at least half to the backlog),
  each lane in ``seq`` order.
* **No starvation.** While several classes wait, the most important one gets
  :data:`SHARE_EVERY` - 1 of every :data:`SHARE_EVERY` sends; the remaining one
  goes to the less important classes, chosen by the same rule among them. With 8:
  one waiting class below the top gets 1/8 of the sends, two get 7/64 and 1/64.

What it does not do: I/O, MQTT, acknowledgements. It holds no lock and runs on
the event loop only. Guarantees: after the reads from :meth:`queries` are
absorbed, every lane either holds at least ``slots`` rows or all its rows the
database had; a row is handed out by :meth:`take` at most once per connection
unless :meth:`put_back` returns it; a lane holds at most ``slots`` + one read
(the read-ahead), so memory is bounded by the number of lanes.
"""

from __future__ import annotations

import bisect
import enum
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from edge_agent.buffer.outbox import LaneQuery, OutboxRow

SHARE_EVERY = 8


class LaneKind(enum.Enum):
    """Which part of a priority class a lane reads."""

    BACKLOG = "backlog"  # oldest_first: the whole class; live_first: seq <= mark
    LIVE = "live"  # live_first only: seq > mark


@dataclass(slots=True, kw_only=True)
class Lane:
    """Rows of one priority class (and part) fetched but not yet sent, in seq order."""

    priority: int
    kind: LaneKind
    after: int  # last seq fetched into this lane (the read cursor)
    max_seq: int | None  # inclusive upper bound; a bounded lane never grows once read out
    rows: deque[OutboxRow] = field(default_factory=deque)
    exhausted: bool = False  # the last read returned everything the database had

    def query(self, limit: int) -> LaneQuery:
        """The read that continues this lane."""
        return LaneQuery(
            priority=self.priority, after=self.after, limit=limit, max_seq=self.max_seq
        )


@dataclass(slots=True)
class _Class:
    """The lanes of one priority: ``[backlog]`` or ``[live, backlog]`` (live_first)."""

    lanes: list[Lane]
    turn: int = 0  # live_first: which lane goes next when both hold rows

    def waiting(self) -> bool:
        return any(lane.rows for lane in self.lanes)

    def pop(self) -> OutboxRow:
        if len(self.lanes) == 1:
            return self.lanes[0].rows.popleft()
        first = self.lanes[self.turn]
        other = self.lanes[1 - self.turn]
        if first.rows and other.rows:
            self.turn = 1 - self.turn
            return first.rows.popleft()
        return (first if first.rows else other).rows.popleft()


class ShareScheduler:
    """Picks the class for the next send: the top class, except every Nth send (recursively).

    Args:
        every: The top waiting class gets ``every - 1`` of every ``every`` sends.
    """

    def __init__(self, every: int = SHARE_EVERY) -> None:
        if every < 2:
            raise ValueError("every must be at least 2")
        self.every = every
        self._counts: list[int] = []  # one counter per rank among the waiting classes

    def pick(self, waiting: Sequence[int]) -> int:
        """The class to send from, given the waiting classes most important first (non-empty)."""
        rank = 0
        while rank < len(waiting) - 1:
            if rank == len(self._counts):
                self._counts.append(0)
            self._counts[rank] = (self._counts[rank] + 1) % self.every
            if self._counts[rank] != 0:
                return waiting[rank]
            rank += 1  # this send is the share of the less important classes
        return waiting[rank]


class DrainQueue:
    """Per-connection read-ahead lanes and the send order across priority classes.

    Args:
        live_mark: ``live_first``: the last seq that existed when the connection came
            up (rows up to it are the backlog). ``None`` for ``oldest_first``.
        share_every: See :class:`ShareScheduler`.
    """

    def __init__(self, *, live_mark: int | None, share_every: int = SHARE_EVERY) -> None:
        self.live_mark = live_mark
        self._classes: dict[int, _Class] = {}
        self._order: list[int] = []  # known priorities, most important first
        self._scheduler = ShareScheduler(share_every)
        self.epoch = 0  # bumped by wake(); a read older than the last wake cannot exhaust
        self.discovery_due = True  # classes may exist that have no lane yet

    # -- reading ---------------------------------------------------------------------------
    @property
    def classes(self) -> list[int]:
        """Known priority classes, most important first."""
        return list(self._order)

    def wake(self) -> None:
        """New rows were committed: unbounded lanes may grow, new classes may exist."""
        self.epoch += 1
        self.discovery_due = True
        for cls in self._classes.values():
            for lane in cls.lanes:
                if lane.max_seq is None:
                    lane.exhausted = False

    def add_classes(self, priorities: Iterable[int]) -> bool:
        """Create lanes for classes not seen yet on this connection; True if any was new."""
        added = False
        for priority in priorities:
            if priority in self._classes:
                continue
            backlog = Lane(
                priority=priority, kind=LaneKind.BACKLOG, after=0, max_seq=self.live_mark
            )
            if self.live_mark is None:
                lanes = [backlog]
            else:
                live = Lane(
                    priority=priority, kind=LaneKind.LIVE, after=self.live_mark, max_seq=None
                )
                lanes = [live, backlog]
            self._classes[priority] = _Class(lanes)
            bisect.insort(self._order, priority)
            added = True
        return added

    def lanes_to_read(self, slots: int) -> list[Lane]:
        """Lanes holding fewer than ``slots`` rows whose database part is not read out."""
        return [
            lane
            for priority in self._order
            for lane in self._classes[priority].lanes
            if len(lane.rows) < slots and not lane.exhausted
        ]

    def queries(self, slots: int, limit: int) -> list[LaneQuery]:
        """The reads that top every lane up to at least ``slots`` rows (``limit`` rows each).

        A read asks for at least ``slots`` rows: a lane that got fewer is then known
        to be read out, which is what lets :meth:`take` treat an empty lane as empty.
        """
        size = max(limit, slots)
        return [lane.query(size) for lane in self.lanes_to_read(slots)]

    def absorb(
        self, queries: Sequence[LaneQuery], results: Sequence[Sequence[OutboxRow]], epoch: int
    ) -> None:
        """Append read results to their lanes; ``epoch`` is :attr:`epoch` when they were issued."""
        for query, rows in zip(queries, results, strict=True):
            lane = self._lane(query.priority, query.max_seq)
            if lane is None or lane.after != query.after:
                continue  # stale: the lane moved on (cannot happen on one loop; be safe)
            lane.rows.extend(rows)
            if rows:
                lane.after = rows[-1].seq
            # A bounded lane cannot gain rows later; an open one only until the next wake().
            done = len(rows) < query.limit
            lane.exhausted = done and (lane.max_seq is not None or epoch == self.epoch)

    def mark_absent(self, present: Iterable[int], epoch: int) -> None:
        """Classes without rows in the database (all deleted) need no read until a wake()."""
        if epoch != self.epoch:
            return  # rows were committed since the discovery ran
        keep = set(present)
        for priority in self._order:
            if priority not in keep:
                for lane in self._classes[priority].lanes:
                    if not lane.rows:
                        lane.exhausted = True

    # -- sending ---------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        """Rows fetched and not yet handed out."""
        return sum(len(lane.rows) for cls in self._classes.values() for lane in cls.lanes)

    def take(self, slots: int) -> list[OutboxRow]:
        """Up to ``slots`` rows in send order (priority with shares, seq order in a lane)."""
        out: list[OutboxRow] = []
        waiting = [p for p in self._order if self._classes[p].waiting()]
        while waiting and len(out) < slots:
            priority = self._scheduler.pick(waiting)
            cls = self._classes[priority]
            out.append(cls.pop())
            if not cls.waiting():
                waiting.remove(priority)
        return out

    def put_back(self, rows: Sequence[OutboxRow]) -> None:
        """Return rows that were taken but not sent, so they go first in their lanes again."""
        for row in reversed(rows):
            lane = self._lane_of(row)
            if lane is not None:
                lane.rows.appendleft(row)

    # -- internals -------------------------------------------------------------------------
    def _lane(self, priority: int, max_seq: int | None) -> Lane | None:
        cls = self._classes.get(priority)
        if cls is None:
            return None
        for lane in cls.lanes:
            if lane.max_seq == max_seq:
                return lane
        return None

    def _lane_of(self, row: OutboxRow) -> Lane | None:
        cls = self._classes.get(row.priority)
        if cls is None:
            return None
        kind = (
            LaneKind.LIVE
            if self.live_mark is not None and row.seq > self.live_mark
            else LaneKind.BACKLOG
        )
        for lane in cls.lanes:
            if lane.kind is kind:
                return lane
        return None
