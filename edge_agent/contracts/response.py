"""Response time of provider breakdowns: the statistic, the budget and the bound crossings.

Spec §3.13: the response time of a provider-attributed breakdown is its
acknowledgement (or arrival) instant minus the stop's start (fault onset), on
the wall clock. A term states its statistic (``max`` or a nearest-rank
percentile) and a bound per level. A breakdown still unanswered when
``start + bound`` passes is a breach **at that instant**: :func:`bound_crossings`
lists those instants, and a late answer does not move them (the bound was
crossed unanswered all the same).

At an evaluation instant ``t`` only what is known by ``t`` counts: an answer
with a time after ``t`` is not there yet. An unanswered breakdown contributes
its elapsed time ``t - start`` as a *lower bound* of its response, so the
statistic reported "so far" is a lower bound of the final one (the nearest
rank is monotonic in every value). An answer before the onset (a clock or data
error) counts as 0 s. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edge_agent.contracts.model import ResponseTo

MAX = 100
"""The percentile that is the maximum (nearest rank of 100 % is the largest value)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Breakdown:
    """A provider-attributed breakdown and its answers (epoch milliseconds)."""

    event_id: str
    start_ms: int
    acknowledged_ms: int | None = None
    arrived_ms: int | None = None
    machine: str = ""

    def answered_ms(self, to: ResponseTo) -> int | None:
        """The instant that ends this breakdown's response, if any."""
        return self.acknowledged_ms if to is ResponseTo.ACKNOWLEDGED else self.arrived_ms


def nearest_rank(values: Sequence[int], percentile: int) -> int | None:
    """The nearest-rank percentile: the ``ceil(p·n/100)``-th smallest value (None if empty)."""
    if not values:
        return None
    if not 1 <= percentile <= MAX:
        raise ValueError("percentile must be 1..100")
    rank = -(-percentile * len(values) // MAX)
    return sorted(values)[rank - 1]


def allowed_late(count: int, percentile: int) -> int:
    """How many of ``count`` responses may exceed the bound with the statistic still within it.

    The nearest-rank value is within the bound exactly when at most
    ``count - ceil(p·count/100)`` values are above it (0 for ``max``).
    """
    return count - (-(-percentile * count // MAX))


def _started(breakdowns: Iterable[Breakdown], t_ms: int) -> list[Breakdown]:
    return [b for b in breakdowns if b.start_ms <= t_ms]


def response_values(breakdowns: Iterable[Breakdown], to: ResponseTo, t_ms: int) -> list[int]:
    """Response of every breakdown started by ``t_ms``; unanswered ones at their elapsed time."""
    out: list[int] = []
    for b in _started(breakdowns, t_ms):
        answered = b.answered_ms(to)
        if answered is not None and answered <= t_ms:
            out.append(max(0, answered - b.start_ms))
        else:
            out.append(t_ms - b.start_ms)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class BoundCount:
    """Where the breakdowns of a period stand against one bound at an instant.

    ``late``: answered after the bound, or unanswered at or past ``start + bound``.
    ``pending``: unanswered and the bound not reached yet. ``budget``: late
    responses still allowed among the ``count`` breakdowns so far (negative:
    the level is breached). ``next_deadline_ms``: the earliest pending crossing.
    """

    count: int
    late: int
    pending: int
    budget: int
    next_deadline_ms: int | None


def count_against(
    breakdowns: Iterable[Breakdown], to: ResponseTo, bound_ms: int, percentile: int, t_ms: int
) -> BoundCount:
    """Count late and pending responses at ``t_ms`` for one bound and statistic."""
    started = _started(breakdowns, t_ms)
    late = pending = 0
    deadlines: list[int] = []
    for b in started:
        answered = b.answered_ms(to)
        deadline = b.start_ms + bound_ms
        if answered is not None and answered <= t_ms:
            late += answered - b.start_ms > bound_ms
        elif t_ms >= deadline:
            late += 1
        else:
            pending += 1
            deadlines.append(deadline)
    return BoundCount(
        count=len(started),
        late=late,
        pending=pending,
        budget=allowed_late(len(started), percentile) - late,
        next_deadline_ms=min(deadlines, default=None),
    )


def bound_crossings(
    breakdowns: Iterable[Breakdown], to: ResponseTo, bound_ms: int, after_ms: int, until_ms: int
) -> list[tuple[str, int]]:
    """``(event_id, instant)`` of every bound crossed unanswered in ``(after_ms, until_ms]``.

    The instant is ``start + bound``, whatever happens later: a breach is
    dated when the bound passed, not when it was noticed or answered.
    """
    out: list[tuple[str, int]] = []
    for b in breakdowns:
        deadline = b.start_ms + bound_ms
        if not after_ms < deadline <= until_ms:
            continue
        answered = b.answered_ms(to)
        if answered is None or answered > deadline:
            out.append((b.event_id, deadline))
    return sorted(out, key=lambda item: (item[1], item[0]))
