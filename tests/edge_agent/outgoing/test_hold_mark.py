"""What the outbox staging holds in memory is known after a ``kill -9`` (issue 22).

The hold mark is a real file in a temporary state directory; the buffer is the
refusing fake of ``test_staging.py`` (the real buffer's full budget is provoked in
``tests/edge_agent/ops/test_events.py`` and ``test_staging_budget.py``). A crash is
the staging object abandoned without :meth:`OutboxStaging.close`; the restart is a
new one on the same state directory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edge_agent.buffer import MessageKind
from edge_agent.errors import StorageFull
from edge_agent.ops.events import Event, EventLog
from edge_agent.outgoing.holdmark import HOLD_MARK, HoldMark
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.uplink import TopicTemplates
from tests.edge_agent.outgoing.test_staging import FakeBuffer

TOPICS = TopicTemplates.create(site="lab", agent="gw")


def started(buffer: FakeBuffer, state: Path, max_held: int = 20_000) -> OutboxStaging:
    """A staging as the runtime builds it, with its hold mark in ``state``."""
    mark = HoldMark(state / HOLD_MARK, clock=lambda: 1_800_000_000.0)
    return OutboxStaging(buffer, TOPICS, EventLog(), max_held, hold_mark=mark)  # type: ignore[arg-type]


async def test_a_kill_while_records_are_held_is_counted_at_the_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Outbox full: 2 KPI records and a stop event held; killed; the restart counts 3 lost."""
    buffer = FakeBuffer()
    buffer.refuse = StorageFull("budget")
    staging = started(buffer, tmp_path)
    for window in ("hour:10", "day:1"):
        data = {"machine": "m", "window": window, "revision": 0, "final": True}
        staging.stage(MessageKind.KPI, "t/kpi", data, record_key=f"m|{window}|0|True")
    staging.stage(MessageKind.STOP, "t/stop", {"event_id": "m@x"})
    assert not await staging.flush()
    mark = json.loads((tmp_path / HOLD_MARK).read_text())
    assert (mark["held"], mark["since"]) == ({"kpi": 2, "stop": 1}, 1_800_000_000.0)

    restarted = started(FakeBuffer(), tmp_path)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="edge_agent.events"):
        previous = restarted.recover_hold()
    assert previous is not None
    assert (previous.held, previous.count) == ({"kpi": 2, "stop": 1}, 3)
    assert restarted.events.counters[Event.HELD_LOST] == 3
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(Event.HELD_LOST.spec.enter)
    assert "kinds=kpi:2,stop:1" in line
    assert "since=2027-01-15T08:00:00Z" in line
    assert not (tmp_path / HOLD_MARK).exists()  # counted once, not at every start
    assert started(FakeBuffer(), tmp_path).recover_hold() is None


async def test_the_mark_follows_the_hold_and_goes_when_it_is_stored(tmp_path: Path) -> None:
    """Counts rewritten as the hold changes; removed once everything is stored."""
    buffer = FakeBuffer()
    buffer.refuse = StorageFull("budget")
    staging = started(buffer, tmp_path)
    staging.stage(MessageKind.STOP, "t/stop", {"event_id": "m@x"})
    assert not await staging.flush()
    staging.stage(MessageKind.STOP, "t/stop", {"event_id": "m@y"})
    staging.stage_intervals("m", [{"start": 1.0, "end": 2.0}], ("calc:m", dict))
    assert not await staging.flush()
    assert json.loads((tmp_path / HOLD_MARK).read_text())["held"] == {"intervals": 1, "stop": 2}
    buffer.refuse = None
    assert await staging.flush()
    assert not (tmp_path / HOLD_MARK).exists()
    restarted = started(FakeBuffer(), tmp_path)
    assert restarted.recover_hold() is None
    assert restarted.events.counters[Event.HELD_LOST] == 0


async def test_a_clean_stop_counts_what_it_drops_and_leaves_no_mark(tmp_path: Path) -> None:
    """close(): the drop is counted by the stop itself, so the next start reports nothing."""
    buffer = FakeBuffer()
    buffer.refuse = StorageFull("budget")
    staging = started(buffer, tmp_path)
    staging.stage(MessageKind.STOP, "t/stop", {"event_id": "m@x"})
    assert await staging.close() == 1
    assert not (tmp_path / HOLD_MARK).exists()
    assert started(FakeBuffer(), tmp_path).recover_hold() is None


async def test_an_unwritable_mark_is_logged_once_and_never_blocks_the_outbox(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A state directory that refuses the file: one error line, the staging carries on."""
    buffer = FakeBuffer()
    buffer.refuse = StorageFull("budget")
    staging = started(buffer, tmp_path / "missing")
    with caplog.at_level(logging.ERROR, logger="edge_agent.outgoing"):
        for i in range(3):
            staging.stage(MessageKind.STOP, "t/stop", {"event_id": f"m@{i}"})
            assert not await staging.flush()
    mark_lines = [r.getMessage() for r in caplog.records if r.name == "edge_agent.outgoing"]
    assert [line.split(" path=")[0] for line in mark_lines] == ["Could not write the hold mark"]
    buffer.refuse = None
    assert await staging.flush()
    assert len(buffer.stored) == 3


def test_an_unreadable_mark_counts_as_one_unknown_loss(tmp_path: Path) -> None:
    """A torn or foreign file still says something was held."""
    (tmp_path / HOLD_MARK).write_text("{not json")
    previous = HoldMark(tmp_path / HOLD_MARK).take_previous()
    assert previous is not None
    assert previous.held == {"unknown": 1}


async def test_intervals_over_the_bound_are_counted_in_health_and_the_catalogue() -> None:
    """DerivedRows drops the oldest intervals over the bound: pipeline figure and event."""
    buffer = FakeBuffer()
    buffer.refuse = StorageFull("budget")
    staging = OutboxStaging(buffer, TOPICS, EventLog(), max_held=2)  # type: ignore[arg-type]
    source = ("calc:m", lambda: {"v": 1})
    for i in range(5):
        staging.stage_intervals("m", [{"start": float(i), "end": i + 1.0}], source)
        assert not await staging.flush()
    assert staging.derived.dropped == 3
    assert staging.figures()["dropped_intervals"] == 3
    assert staging.events.counters[Event.INTERVALS_DROPPED] == 3
    assert staging.events.active(Event.INTERVALS_DROPPED)
    buffer.refuse = None
    assert await staging.flush()
    assert not staging.events.active(Event.INTERVALS_DROPPED)
