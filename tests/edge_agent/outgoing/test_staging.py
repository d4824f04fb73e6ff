"""Outbox staging: one commit per flush, a bounded hold while the outbox refuses, never a KPI lost.

The buffer is replaced by a small fake here (pure staging logic); the real buffer's
full-disk behaviour is provoked in ``tests/edge_agent/ops/test_events.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from edge_agent.buffer import MessageKind, Outgoing
from edge_agent.errors import StorageFull
from edge_agent.ops.events import Event, EventLog
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.uplink import TopicTemplates


class FakeBuffer:
    """Stores committed batches; refuses with StorageFull (or another error) on request.

    ``room``: how many more messages fit (None: unlimited); a batch larger than that is
    refused whole, like a transaction that hits the page cap.
    """

    def __init__(self, room: int | None = None) -> None:
        self.batches: list[list[Outgoing]] = []
        self.refuse: Exception | None = None
        self.room = room
        self.states: list[dict[str, Any]] = []  # the calculator states of each commit

    async def publish_many(
        self, messages: Sequence[Outgoing], *, states: Any = None, intervals: Any = ()
    ) -> list[int]:
        """Commit (record) the batch, or raise what the test asked for."""
        await asyncio.sleep(0)  # a real commit yields to the event loop
        if self.refuse is not None:
            raise self.refuse
        if self.room is not None:
            if len(messages) > self.room:
                raise StorageFull("budget")
            self.room -= len(messages)
        self.batches.append(list(messages))
        self.states.append(dict(states or {}))
        return list(range(len(messages)))

    @property
    def stored(self) -> list[Outgoing]:
        """Every message committed, in commit order."""
        return [m for b in self.batches for m in b]


def staging(buffer: FakeBuffer, max_held: int = 20_000) -> OutboxStaging:
    topics = TopicTemplates.create(site="lab", agent="gw")
    return OutboxStaging(buffer, topics, EventLog(), max_held)  # type: ignore[arg-type]


async def test_everything_staged_is_committed_in_one_batch_with_its_kind_priority() -> None:
    """One flush, one commit; priorities come from the message kind."""
    buf = FakeBuffer()
    st = staging(buf)
    st.stage(MessageKind.TELEMETRY, "t", "{}")
    st.stage(MessageKind.KPI, "k", {"x": 1}, record_key="m|day|0|False")
    assert await st.flush()
    (batch,) = buf.batches
    assert [(m.kind, m.priority) for m in batch] == [("telemetry", 9), ("kpi", 0)]
    assert st.published == {MessageKind.TELEMETRY: 1, MessageKind.KPI: 1}
    assert len(st) == 0


async def test_a_full_outbox_keeps_messages_and_drops_least_important_over_the_bound() -> None:
    """Held while refused; over the bound telemetry goes first, oldest first, never kpi/stop."""
    buf = FakeBuffer()
    buf.refuse = StorageFull("budget")
    st = staging(buf, max_held=3)
    for kind in (MessageKind.TELEMETRY, MessageKind.KPI, MessageKind.HEALTH, MessageKind.STOP):
        st.stage(kind, "t", {"k": kind.value})
    st.stage(MessageKind.TELEMETRY, "t", {"k": "telemetry2"})
    assert not await st.flush()
    # Both telemetry messages (priority 9) go before health (5); kpi and stop stay.
    assert [m.kind for m in st.held] == ["kpi", "health", "stop"]
    assert st.dropped == {"telemetry": 2}
    assert st.events.counters[Event.OUTBOX_DROPPED] == 2
    assert st.events.active(Event.OUTBOX_FULL)
    buf.refuse = None
    assert await st.flush()
    assert not st.events.active(Event.OUTBOX_FULL)
    assert [m.kind for m in buf.batches[0]] == ["kpi", "health", "stop"]


async def test_summaries_are_dropped_last_and_counted_when_only_they_exceed_the_bound() -> None:
    """Only summaries held beyond the bound: so-far KPI records go first, stops stay, counted."""
    buf = FakeBuffer()
    buf.refuse = StorageFull("budget")
    st = staging(buf, max_held=3)
    st.stage(MessageKind.STOP, "t", {"i": 0})
    for i in range(3):
        st.stage(MessageKind.KPI, "t", {"i": i, "final": False}, record_key=f"m|hour:{i}|0|False")
    st.stage(MessageKind.STOP, "t", {"i": 1})
    assert not await st.flush()
    assert [m.data["i"] for m in st.held if m.kind == "stop"] == [0, 1]  # type: ignore[index]
    assert st.dropped == {"kpi": 2}
    assert st.figures()["dropped_summaries"] == 2
    acc = st.accounting()
    assert acc["created"] == {"stop": 2, "kpi": 3}
    assert acc["held"] == {"stop": 2, "kpi": 1}


async def test_a_failed_commit_keeps_the_messages_staged_in_order() -> None:
    """Any failure, not only a full disk: nothing staged is lost, order is kept."""
    buf = FakeBuffer()
    st = staging(buf)
    st.stage(MessageKind.STOP, "t", {"i": 1})
    buf.refuse = OSError("I/O error")
    assert not await st.flush()
    st.stage(MessageKind.STOP, "t", {"i": 2})
    assert st.events.active(Event.FLUSH_FAILED, "outbox")
    buf.refuse = None
    assert await st.flush()
    assert [m.data for m in buf.batches[0]] == [{"i": 1}, {"i": 2}]
    assert not st.events.active(Event.FLUSH_FAILED, "outbox")


async def test_what_fits_is_stored_row_by_row_most_important_first() -> None:
    """Room for 3 of 8: the 3 most important go in, the rest as space frees (not all or none)."""
    buf = FakeBuffer(room=3)
    st = staging(buf)
    st.stage(MessageKind.TELEMETRY, "t", {"i": 0})
    for i in range(1, 6):
        st.stage(MessageKind.STOP, "t", {"i": i})
    st.stage(MessageKind.HEALTH, "t", {"i": 6})
    st.stage(MessageKind.KPI, "t", {"i": 7, "final": True}, record_key="m|day|0|True")
    assert not await st.flush()
    assert [m.data["i"] for m in buf.stored] == [1, 2, 3]  # type: ignore[index]
    assert st.events.active(Event.OUTBOX_FULL)
    buf.room = 4
    assert not await st.flush()
    assert [m.data["i"] for m in buf.stored][3:] == [4, 5, 7, 6]  # type: ignore[index]
    buf.room = None
    assert await st.flush()
    assert not st.events.active(Event.OUTBOX_FULL)
    assert sorted(m.data["i"] for m in buf.stored) == list(range(8))  # type: ignore[index]
    acc = st.accounting()
    assert acc["created"] == acc["stored"]
    assert acc["held"] == {}


async def test_a_held_so_far_record_is_superseded_by_its_newer_version() -> None:
    """The next "so far" record of a window replaces the held one; counted, never stored twice."""
    buf = FakeBuffer(room=0)
    st = staging(buf)
    for second in range(5):
        for window in ("hour", "day"):
            data = {"name": window, "final": False, "second": second}
            st.stage(MessageKind.KPI, "t", data, record_key=f"m|{window}|0|False")
        assert not await st.flush()
    assert len(st) == 2
    buf.room = None
    assert await st.flush()
    assert [(m.data["name"], m.data["second"]) for m in buf.stored] == [  # type: ignore[index]
        ("hour", 4),
        ("day", 4),
    ]
    acc = st.accounting()
    assert acc["created"] == {"kpi": 10}
    assert acc["stored"] == {"kpi": 2}
    assert acc["superseded"] == {"kpi": 8}
    assert st.figures()["superseded_outgoing"] == 8


async def test_concurrent_flushes_store_each_message_once_in_order() -> None:
    """The dispatcher's and the reporter's flushes overlap: one at a time, nothing twice."""
    buf = FakeBuffer()
    st = staging(buf)
    for i in range(3):
        st.stage(MessageKind.STOP, "t", {"i": i})
    first = asyncio.create_task(st.flush())
    await asyncio.sleep(0)
    st.stage(MessageKind.STOP, "t", {"i": 3})
    assert await st.flush()
    assert await first
    assert [m.data["i"] for m in buf.stored] == [0, 1, 2, 3]  # type: ignore[index]


async def test_close_stores_what_fits_and_counts_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    """At the stop: a last attempt, then one error line with the kinds; nothing is left held."""
    buf = FakeBuffer(room=0)
    st = staging(buf)
    st.stage(MessageKind.STOP, "t", {"i": 0})
    st.stage(MessageKind.KPI, "t", {"final": False}, record_key="m|hour|0|False")
    st.stage(MessageKind.TELEMETRY, "t", {"i": 1})
    assert not await st.flush()
    buf.room = 1
    with caplog.at_level(logging.ERROR, logger="edge_agent.outgoing"):
        assert await st.close() == 2
    assert [m.kind for m in buf.stored] == ["stop"]
    assert st.dropped == {"kpi": 1, "telemetry": 1}
    assert len(st) == 0
    (line,) = [r.getMessage() for r in caplog.records if r.name == "edge_agent.outgoing"]
    assert line.startswith("Stopping with messages the outbox did not take messages=2 summaries=1")
    acc = st.accounting()
    assert acc["created"] == {"stop": 1, "kpi": 1, "telemetry": 1}
    assert acc["stored"] == {"stop": 1}


async def test_a_flush_whose_caller_is_cancelled_still_stores_and_counts() -> None:
    """The reporter task cancelled mid-commit (at the stop): the batch is not lost."""
    buf = FakeBuffer()
    st = staging(buf)
    for i in range(3):
        st.stage(MessageKind.KPI, "t", {"i": i}, record_key=f"k{i}")
    task = asyncio.create_task(st.flush())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await st.flush()  # waits for the first one
    assert [m.data["i"] for m in buf.stored] == [0, 1, 2]  # type: ignore[index]
    assert st.accounting()["stored"] == {"kpi": 3}


async def test_the_calculator_state_is_committed_only_after_every_message_it_derived() -> None:
    """Stored in pieces: the state goes last, alone, with a snapshot taken at that flush."""
    buf = FakeBuffer(room=1)
    st = staging(buf)
    calc = {"n": 1}
    source = ("calc:a", lambda: dict(calc))
    for i in range(3):
        st.stage(MessageKind.STOP, "t", {"i": i}, state=source)
    assert not await st.flush()
    assert [len(b) for b in buf.batches] == [1]
    assert buf.states == [{}]  # not with the first stop: two are still held
    assert st.pending
    calc["n"] = 2
    buf.room = None
    assert await st.flush()
    assert [m.data["i"] for m in buf.stored] == [0, 1, 2]  # type: ignore[index]
    assert buf.states[-1] == {"calc:a": {"n": 2}}
    assert len(buf.batches[-1]) == 2  # the two held stops and the state, one commit
    assert not st.pending
