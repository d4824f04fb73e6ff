"""Rows derived from calculator state are committed with that state, or not at all (issue 22).

Real buffer on a real SQLite file: what one flush commits is read back with sqlite3.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from edge_agent.buffer import Buffer, MessageKind, Outgoing, StorageConfig
from edge_agent.errors import StorageFull
from edge_agent.ops.events import EventLog
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.uplink import TopicTemplates


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(path)
    try:
        return list(con.execute(sql))
    finally:
        con.close()


@pytest.fixture
async def buffer(tmp_path: Path) -> Any:
    buf = Buffer(StorageConfig(path=tmp_path / "buffer.db", flush_interval_ms=60_000), "gw")
    await buf.open()
    yield buf
    await buf.close()


async def test_a_stop_its_intervals_and_the_state_they_derive_from_commit_together(
    buffer: Buffer,
) -> None:
    """One flush: the outbox row, the interval rows and the state snapshot taken at the flush."""
    staging = OutboxStaging(buffer, TopicTemplates.create(site="s", agent="gw"), EventLog())
    calc = {"n": 1}
    source = ("calc:press1", lambda: dict(calc))
    staging.stage(MessageKind.STOP, "t/stop", {"event_id": "press1@x"}, state=source)
    staging.stage_intervals("press1", [{"start": 10.0, "end": 20.0, "state": "stopped"}], source)
    calc["n"] = 2  # the snapshot is taken when the flush takes the batch
    assert await staging.flush()
    path = buffer.config.path
    # Nothing waits in the writer's row queue: the interval is committed already.
    assert rows(path, "SELECT machine, start, end FROM intervals") == [("press1", 10.0, 20.0)]
    assert [
        json.loads(v) for (v,) in rows(path, "SELECT value FROM state WHERE key LIKE 'calc:%'")
    ] == [{"n": 2}]
    assert rows(path, "SELECT kind FROM outbox") == [("stop",)]
    assert not staging.pending


async def test_a_state_with_nothing_staged_is_saved_alone(buffer: Buffer) -> None:
    """depends_on() alone: the periodic save of a calculator, no outbox row, no seq used."""
    staging = OutboxStaging(buffer, TopicTemplates.create(site="s", agent="gw"), EventLog())
    staging.depends_on(("calc:a", lambda: {"v": 7}))
    assert await staging.flush()
    assert rows(buffer.config.path, "SELECT key, value FROM state WHERE key LIKE 'calc:%'") == [
        ("calc:a", '{"v":7}')
    ]
    assert buffer.last_seq == 0


async def test_a_failing_transaction_stores_neither_rows_nor_state(buffer: Buffer) -> None:
    """An interval row the database refuses rolls back the outbox row and the state with it."""
    path = buffer.config.path
    msg = Outgoing(kind="stop", topic="t", data={"x": 1}, priority=0)
    bad: list[tuple[str, Mapping[str, Any]]] = [(None, {"start": 1.0})]  # type: ignore[list-item]
    with pytest.raises(sqlite3.IntegrityError):
        await buffer.publish_many([msg], states={"calc:a": {"v": 1}}, intervals=bad)
    assert rows(path, "SELECT COUNT(*) FROM outbox") == [(0,)]
    assert rows(path, "SELECT COUNT(*) FROM state WHERE key LIKE 'calc:%'") == [(0,)]


class RefusingBuffer:
    """Refuses every commit (StorageFull) until told, then records what it is given.

    (The staging retries a refused batch piece by piece within the same flush.)
    """

    def __init__(self) -> None:
        self.refuse = True
        self.commits: list[tuple[int, dict[str, Any], list[Any]]] = []

    async def publish_many(
        self, messages: Any, *, states: Any = None, intervals: Any = ()
    ) -> list[int]:
        """Refuse while ``refuse``, else record the commit."""
        if self.refuse:
            raise StorageFull("budget")
        self.commits.append((len(messages), dict(states or {}), list(intervals)))
        return list(range(len(messages)))


async def test_a_refused_flush_gives_everything_back_and_the_next_takes_a_fresh_snapshot() -> None:
    """Outbox full: rows, intervals and the state wait; the retry commits them with newer state."""
    buf = RefusingBuffer()
    staging = OutboxStaging(buf, TopicTemplates.create(site="s", agent="gw"), EventLog())  # type: ignore[arg-type]
    calc = {"n": 1}
    source = ("calc:a", lambda: dict(calc))
    staging.stage(MessageKind.STOP, "t", {"e": 1}, state=source)
    staging.stage_intervals("a", [{"start": 1.0, "end": 2.0}], source)
    assert not await staging.flush()
    assert staging.pending
    buf.refuse = False
    calc["n"] = 2
    staging.stage(MessageKind.STOP, "t", {"e": 2}, state=source)
    assert await staging.flush()
    assert buf.commits == [(2, {"calc:a": {"n": 2}}, [("a", {"start": 1.0, "end": 2.0})])]
