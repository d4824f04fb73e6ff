"""Gap bookkeeping of one sequence-numbering stream (pure)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.collect import sequence


def test_skipped_numbers_open_a_gap_and_a_late_one_heals_it() -> None:
    """1,2,5 opens gap 3..4; 4 shrinks it to 3; 3 closes it."""
    first = sequence.advance(0, [], [1, 2, 5])
    assert (first.last_seq, first.detected, first.added) == (5, 2, ((3, 4),))
    second = sequence.advance(5, [(3, 4)], [4])
    assert (second.filled, second.removed, second.added) == (1, ((3, 4),), ((3, 3),))
    third = sequence.advance(5, [(3, 3)], [3])
    assert (third.filled, third.removed, third.added, third.last_seq) == (1, ((3, 3),), (), 5)


def test_a_late_number_in_the_middle_splits_the_gap() -> None:
    """Healing 5 of the gap 3..8 leaves 3..4 and 6..8."""
    adv = sequence.advance(9, [(3, 8)], [5, 12])
    assert adv.added == ((3, 4), (6, 8), (10, 11))
    assert (adv.filled, adv.detected, adv.last_seq) == (1, 2, 12)


def test_first_contact_mid_stream_counts_the_start_as_missing() -> None:
    """A stream first seen at 40 is missing 1..39 until they arrive."""
    adv = sequence.advance(0, [], [40])
    assert adv.added == ((1, 39),)
    assert sequence.missing(adv.added) == 39


def test_a_late_number_outside_any_gap_is_untracked() -> None:
    """Below last_seq and in no gap: counted as untracked, nothing else changes."""
    adv = sequence.advance(10, [], [4])
    assert (adv.untracked, adv.filled, adv.removed, adv.added) == (1, 0, (), ())


@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(1, 41))), st.lists(st.integers(1, 8), min_size=1))
def test_any_arrival_order_ends_without_gaps(order: list[int], sizes: list[int]) -> None:
    """Any order and batching: once all arrived, no gap is open and every missing one healed."""
    last, gaps = 0, set()
    detected = filled = 0
    i = k = 0
    while i < len(order):
        size = sizes[k % len(sizes)]
        k += 1
        batch = order[i : i + size]
        i += size
        adv = sequence.advance(last, gaps, batch)
        gaps = (gaps - set(adv.removed)) | set(adv.added)
        last, detected, filled = adv.last_seq, detected + adv.detected, filled + adv.filled
        assert adv.untracked == 0
    assert last == 40
    assert gaps == set()
    assert detected == filled
