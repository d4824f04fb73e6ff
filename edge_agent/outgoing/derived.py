"""What the outbox staging commits with its messages: calculator state and state intervals.

Everything a machine's calculator derives (stop events, KPI records, closed state
intervals) must be stored in ONE transaction with the calculator state that no
longer needs to derive it (issue 22): a ``kill -9`` then leaves either both (the
restarted calculator does not derive them again) or neither (it derives them
again, identically). :class:`DerivedRows` collects, between two flushes of
:class:`~edge_agent.outgoing.staging.OutboxStaging`, which calculator states the
staged rows depend on and the intervals drained from them; :meth:`DerivedRows.take`
snapshots the states when a flush takes its batch (so a snapshot holds exactly what
was drained), and :meth:`DerivedRows.give_back` returns what a failed flush did not
store, to go with the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("edge_agent.outgoing")

#: A calculator state that staged rows derive from: its buffer key and a snapshot function.
StateSource = tuple[str, Callable[[], Mapping[str, Any]]]

Interval = tuple[str, Mapping[str, Any]]  # (machine, interval as a dict)


@dataclass(slots=True)
class Taken:
    """What one flush commits besides its messages."""

    states: dict[str, Any] = field(default_factory=dict)
    intervals: list[Interval] = field(default_factory=list)
    sources: dict[str, Callable[[], Mapping[str, Any]]] = field(default_factory=dict)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`~edge_agent.buffer.Buffer.publish_many` (none if empty)."""
        if not self.states and not self.intervals:
            return {}
        return {"states": self.states, "intervals": self.intervals}


class DerivedRows:
    """Calculator states and intervals waiting for the next flush (see the module docstring).

    Args:
        max_intervals: Bound on intervals held while the outbox refuses; beyond it the
            oldest are dropped and counted in :attr:`dropped`.
    """

    def __init__(self, max_intervals: int) -> None:
        self.max_intervals = max_intervals
        self._sources: dict[str, Callable[[], Mapping[str, Any]]] = {}
        self._intervals: list[Interval] = []
        self.dropped = 0

    @property
    def pending(self) -> bool:
        """Whether a state or an interval waits for a flush."""
        return bool(self._sources or self._intervals)

    @property
    def intervals_waiting(self) -> int:
        """Intervals waiting for a flush."""
        return len(self._intervals)

    def depends_on(self, state: StateSource) -> None:
        """Commit a snapshot of this calculator state with the next flush."""
        key, snapshot = state
        self._sources[key] = snapshot

    def add_intervals(
        self, machine: str, intervals: list[Mapping[str, Any]], state: StateSource
    ) -> None:
        """Closed intervals drained from the calculator ``state`` describes."""
        self._intervals.extend((machine, iv) for iv in intervals)
        self.depends_on(state)

    def take(self) -> Taken:
        """Everything pending, with the states snapshotted now."""
        sources, self._sources = self._sources, {}
        intervals, self._intervals = self._intervals, []
        return Taken(states=_snapshots(sources), intervals=intervals, sources=sources)

    def give_back(self, taken: Taken) -> int:
        """A flush failed: its intervals and states go with the next one (newer sources win).

        Returns:
            How many intervals were dropped now (over :attr:`max_intervals`; also added
            to :attr:`dropped`).
        """
        self._intervals = taken.intervals + self._intervals
        self._sources = {**taken.sources, **self._sources}
        surplus = len(self._intervals) - self.max_intervals
        if surplus <= 0:
            return 0
        # Evidence rows, not the product: the oldest go first, counted.
        del self._intervals[:surplus]
        self.dropped += surplus
        return surplus


def _snapshots(sources: Mapping[str, Callable[[], Mapping[str, Any]]]) -> dict[str, Any]:
    """Each source's snapshot; one that fails is logged and left out (never blocks the outbox)."""
    states: dict[str, Any] = {}
    for key, snapshot in sources.items():
        try:
            states[key] = snapshot()
        except Exception:
            log.exception("Calculator state not saved, snapshot failed: key=%s", key)
    return states
