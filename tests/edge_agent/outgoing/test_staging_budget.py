"""Staging against a real buffer whose 1 MiB budget is full of stop events (never evicted).

The held summaries must go in as soon as space frees, a few at a time, not as one
batch that has to fit whole; the accounting adds up at every step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer, MessageKind, Priority, StorageConfig
from edge_agent.errors import StorageFull
from edge_agent.ops.events import Event, EventLog
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.uplink import TopicTemplates

BIG = "x" * 3000  # about one page per row


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    buf = Buffer(StorageConfig(path=tmp_path / "b.db", max_mb=1, flush_interval_ms=10), "gw")
    await buf.open()
    yield buf
    await buf.close()


async def fill_with_stops(buf: Buffer) -> list[int]:
    """Stop events until the budget refuses one (bounded: 1 MiB holds far fewer)."""
    seqs: list[int] = []
    for i in range(1000):
        try:
            seqs.append(await buf.publish("stop", "t", {"i": i, "b": BIG}, priority=Priority.HIGH))
        except StorageFull:
            return seqs
    pytest.fail("the budget never filled")


def balanced(st: OutboxStaging) -> bool:
    acc = st.accounting()
    return all(
        acc["created"].get(k, 0)
        == sum(acc[part].get(k, 0) for part in ("stored", "superseded", "dropped", "held"))
        for k in acc["created"]
    )


async def test_held_summaries_go_in_as_space_frees_a_few_at_a_time(buffer: Buffer) -> None:
    """40 held records, room for a few after each delivery: stored piecewise, then all."""
    stops = await fill_with_stops(buffer)
    st = OutboxStaging(buffer, TopicTemplates.create(site="lab", agent="gw"), EventLog())
    for i in range(40):
        data = {"name": f"hour:{i}", "final": True, "b": BIG}
        st.stage(MessageKind.KPI, "t", data, record_key=f"m|hour:{i}|0|True")
    st.stage(MessageKind.TELEMETRY, "t", {"b": BIG})
    assert not await st.flush()
    assert st.events.active(Event.OUTBOX_FULL)
    # The room the refused stop event left may still take a record (page layout).
    held = st.figures()["summaries_in_memory"]
    assert held + st.published.get("kpi", 0) == 40
    assert held >= 38, held
    assert balanced(st)

    # The uplink delivers 10 stop events: room for about 10 of the 40, not for all.
    await buffer.ack(stops[:10])
    assert not await st.flush()
    stored = st.published.get("kpi", 0)
    assert 3 <= stored < 40, stored
    assert st.published.get("telemetry", 0) == 0  # summaries first
    assert balanced(st)

    await buffer.ack(stops[10:])
    assert await st.flush()
    assert not st.events.active(Event.OUTBOX_FULL)
    assert st.published == {"kpi": 40, "telemetry": 1}
    assert balanced(st)
    assert buffer.backlog == 41
