"""The ingest queue: bound, full-queue policies, comms events, the queue_full condition."""

from __future__ import annotations

import logging

import pytest

from edge_agent.columns import Column, ColumnPoll
from edge_agent.configkit import Issues, Table
from edge_agent.errors import ConfigError
from edge_agent.ingest.config import IngestConfig, WhenFull, parse_ingest
from edge_agent.ingest.queue import IngestQueue
from edge_agent.model import CommsEvent, CommsState, Reading
from edge_agent.ops.events import Event, EventLog


def batch(i: int, n: int = 3) -> list[Reading]:
    return [Reading("d", f"t{k}", i, float(i), float(i)) for k in range(n)]


def first_values(q: IngestQueue) -> list[object]:
    out = []
    while (item := q.get_nowait()) is not None:
        out.append(item[0].value if isinstance(item, list) else item.state.value)
    return out


def test_drop_newest_keeps_the_oldest_batches_and_counts_the_readings() -> None:
    """Full queue, drop_newest: the batch being put is dropped and its readings counted."""
    events = EventLog()
    q = IngestQueue(IngestConfig(queue_max_batches=10), events)
    for i in range(12):
        q.put_readings(batch(i))
    assert q.dropped_readings == 6
    assert events.counters[Event.QUEUE_FULL] == 6
    assert first_values(q) == list(range(10))


def test_drop_oldest_keeps_the_freshest_batches() -> None:
    """Full queue, drop_oldest: the oldest waiting batch makes room for the new one."""
    q = IngestQueue(IngestConfig(queue_max_batches=10, when_full=WhenFull.DROP_OLDEST))
    for i in range(12):
        q.put_readings(batch(i))
    assert q.dropped_readings == 6
    assert first_values(q) == list(range(2, 12))


def test_comms_events_are_not_dropped_by_the_readings_bound() -> None:
    """A device going down while the queue is full of readings is still heard, in order."""
    q = IngestQueue(IngestConfig(queue_max_batches=10))
    for i in range(10):
        q.put_readings(batch(i))
    q.put_comms(CommsEvent(device="d", state=CommsState.DOWN, ts=1.0, mono=1.0))
    assert q.dropped_events == 0
    assert first_values(q) == [*range(10), "down"]


def test_queue_full_ends_once_the_queue_is_below_half(caplog: pytest.LogCaptureFixture) -> None:
    """One line when the queue fills, one when the dispatcher has drained it below half."""
    q = IngestQueue(IngestConfig(queue_max_batches=10))
    with caplog.at_level(logging.INFO, logger="edge_agent.events"):
        for i in range(11):
            q.put_readings(batch(i))
        for _ in range(5):
            q.get_nowait()
        assert q.events.active(Event.QUEUE_FULL)
        q.get_nowait()  # 4 left, below half of 10
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("Ingest queue full, dropping readings")
    assert messages[1].startswith("Ingest queue has room again")
    assert len(messages) == 2


async def test_get_waits_for_an_item() -> None:
    """The dispatcher's get() returns what a link puts later."""
    import asyncio

    q = IngestQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.put_readings(batch(7))
    item = await asyncio.wait_for(getter, 1)
    assert isinstance(item, list)
    assert item[0].value == 7


def test_ingest_section_is_parsed_and_checked() -> None:
    """[ingest] keys have defaults, a range and a closed set of policies."""
    assert parse_ingest(None) == IngestConfig()
    issues = Issues("a.toml")
    cfg = parse_ingest(Table({"when_full": "drop_oldest"}, "ingest", issues))
    assert cfg.when_full is WhenFull.DROP_OLDEST
    issues = Issues("a.toml")
    parse_ingest(Table({"when_full": "block", "queue_max_batches": 1}, "ingest", issues))
    with pytest.raises(ConfigError) as err:
        issues.raise_if_any()
    text = str(err.value)
    assert "ingest.when_full" in text
    assert "ingest.queue_max_batches" in text


def test_column_polls_are_queued_as_they_are_and_dropped_like_lists() -> None:
    """A ColumnPoll is not copied (no readings built); drop_oldest counts its readings."""
    q = IngestQueue(IngestConfig(queue_max_batches=10, when_full=WhenFull.DROP_OLDEST))
    polls = [ColumnPoll("d", [Column(("a", "b"), [i, i], float(i), float(i))]) for i in range(11)]
    for poll in polls:
        q.put_readings(poll)
    assert q.dropped_readings == 2
    taken = [q.get_nowait() for _ in range(10)]
    assert all(a is b for a, b in zip(taken, polls[1:], strict=True))
    lst = batch(1)
    q.put_readings(lst)
    assert q.get_nowait() is not lst  # other sequences are copied: drivers may reuse them
