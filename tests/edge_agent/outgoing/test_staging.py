"""Outbox staging: one commit per flush, a bounded hold while the outbox refuses, never a KPI lost.

The buffer is replaced by a small fake here (pure staging logic); the real buffer's
full-disk behaviour is provoked in ``tests/edge_agent/ops/test_events.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.buffer import MessageKind, Outgoing
from edge_agent.errors import StorageFull
from edge_agent.ops.events import Event, EventLog
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.uplink import TopicTemplates


class FakeBuffer:
    """Stores committed batches; refuses with StorageFull (or another error) on request."""

    def __init__(self) -> None:
        self.batches: list[list[Outgoing]] = []
        self.refuse: Exception | None = None

    async def publish_many(self, messages: Sequence[Outgoing]) -> list[int]:
        """Commit (record) the batch, or raise what the test asked for."""
        if self.refuse is not None:
            raise self.refuse
        self.batches.append(list(messages))
        return list(range(len(messages)))


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


async def test_kpi_and_stop_are_never_dropped_even_over_the_bound() -> None:
    """Only KPI records and stop events held: the bound is exceeded rather than lose one."""
    buf = FakeBuffer()
    buf.refuse = StorageFull("budget")
    st = staging(buf, max_held=2)
    for i in range(5):
        st.stage(MessageKind.KPI, "t", {"i": i})
    assert not await st.flush()
    assert len(st) == 5
    assert st.dropped == {}


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
