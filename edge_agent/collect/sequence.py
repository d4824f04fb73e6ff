"""Sequence bookkeeping of one ``(agent, epoch)`` stream: gaps found and gaps healed.

A stream starts at sequence number 1. The collector keeps the highest number seen
(``last_seq``) and the *open gaps*: ranges of numbers below it that never arrived. A new
number above ``last_seq`` opens a gap for everything it skipped; a late number inside a
gap heals that number (the gap shrinks or splits). Numbers are handed in only after the
ledger has filtered out duplicates, so every number here is new.

An open gap is not yet a loss: the agent sends KPI records and stop events before its
telemetry backlog (priority classes), so gaps open and heal routinely after an outage. A
gap still open when the agent reports an empty backlog is a loss (the agent counts what
it evicted in its health message). Pure code, no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Gap = tuple[int, int]  # inclusive (first_seq, last_seq)


@dataclass(frozen=True, slots=True)
class Advance:
    """The effect of a set of new sequence numbers on one stream."""

    last_seq: int
    detected: int  # numbers newly found missing
    filled: int  # numbers that healed an open gap
    untracked: int  # late numbers in no known gap (ledger pruned or stream adopted late)
    removed: tuple[Gap, ...]  # open gaps that no longer exist as they were
    added: tuple[Gap, ...]  # open gaps to record


def advance(last_seq: int, open_gaps: Iterable[Gap], seqs: Sequence[int]) -> Advance:
    """Apply new, distinct sequence numbers to a stream.

    Args:
        last_seq: highest number seen so far (0 for a new stream).
        open_gaps: the open gaps that may contain a late number (at least every gap that
            overlaps ``[min(seqs), last_seq]``); others may be left out.
        seqs: numbers not seen before, in any order, without repeats.
    """
    original = sorted(open_gaps)
    gaps = list(original)
    starts = [g[0] for g in gaps]
    filled = untracked = 0
    ordered = sorted(seqs)
    split = bisect.bisect_right(ordered, last_seq)
    for seq in ordered[:split]:
        i = bisect.bisect_right(starts, seq) - 1
        if i < 0 or gaps[i][1] < seq:
            untracked += 1
            continue
        first, last = gaps.pop(i)
        starts.pop(i)
        filled += 1
        for piece in ((seq + 1, last), (first, seq - 1)):
            if piece[0] <= piece[1]:
                gaps.insert(i, piece)
                starts.insert(i, piece[0])
    detected = 0
    prev = last_seq
    for seq in ordered[split:]:
        if seq > prev + 1:
            gaps.append((prev + 1, seq - 1))
            detected += seq - prev - 1
        prev = seq
    before, after = set(original), set(gaps)
    return Advance(
        last_seq=prev,
        detected=detected,
        filled=filled,
        untracked=untracked,
        removed=tuple(sorted(before - after)),
        added=tuple(sorted(after - before)),
    )


def missing(gaps: Iterable[Gap]) -> int:
    """How many numbers the gaps cover."""
    return sum(last - first + 1 for first, last in gaps)
