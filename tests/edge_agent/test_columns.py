"""ColumnPoll: a poll's good readings as columns, still a sequence of the same readings."""

from __future__ import annotations

import pytest

from edge_agent.columns import Column, ColumnPoll
from edge_agent.model import Quality, Reading


def _poll() -> ColumnPoll:
    return ColumnPoll(
        "d1",
        [
            Column(("a", "b"), [1, 2.5], 10.0, 1.0),
            Column(("c",), ["x"], 10.5, 1.5),
        ],
    )


def _readings() -> list[Reading]:
    return [
        Reading("d1", "a", 1, 10.0, 1.0),
        Reading("d1", "b", 2.5, 10.0, 1.0),
        Reading("d1", "c", "x", 10.5, 1.5),
    ]


def test_it_is_the_sequence_of_its_readings() -> None:
    """Iteration, indexing, slicing and length give the readings a list would hold."""
    poll = _poll()
    expected = _readings()
    assert len(poll) == 3
    assert list(poll) == expected
    assert [poll[i] for i in range(3)] == expected
    assert poll[-1] == expected[-1]
    assert poll[1:] == expected[1:]
    assert all(type(r) is Reading and r.quality is Quality.GOOD for r in poll)
    assert poll == expected
    assert poll != expected[:2]
    assert poll.mono == 1.5
    with pytest.raises(IndexError):
        poll[3]
    with pytest.raises(IndexError):
        poll[-4]


def test_one_column_builds_the_same_readings() -> None:
    """The single-column fast path of iteration."""
    poll = ColumnPoll("d1", [Column(("a", "b"), [1, 2.5], 10.0, 1.0)])
    assert list(poll) == _readings()[:2]
    assert poll.index(Reading("d1", "b", 2.5, 10.0, 1.0)) == 1
