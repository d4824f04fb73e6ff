"""Fewer outbox bytes and commits: compressed telemetry payloads, batched telemetry acks."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from edge_agent.buffer import Buffer, Priority, StorageConfig
from edge_agent.buffer.acks import ACK_DELAY_S

from .helpers import count


def telemetry(k: int) -> str:
    values = {f"r{a}": (k * 7 + a) & 0xFFFF for a in range(125)}
    return json.dumps({"device": "d1", "t0": 1764190800 + k, "samples": [[512, values]]})


async def test_telemetry_is_stored_compressed_and_fetched_byte_identical(tmp_path: Path) -> None:
    """A large telemetry payload is a zlib BLOB on disk; fetch returns the exact text."""
    buf = Buffer(StorageConfig(path=tmp_path / "b.db"), "gw")
    await buf.open()
    try:
        text = telemetry(1)
        seq = await buf.publish("telemetry", "t", json.loads(text), priority=Priority.LOW)
        kpi = await buf.publish("kpi", "k", {"oee": 0.5}, priority=Priority.HIGH, record_key="r")
        small = await buf.publish("telemetry", "t", {"device": "d"}, priority=Priority.LOW)
        rows = {r.seq: r for r in await buf.fetch_outbox(after=0, limit=10)}
        assert rows[seq].data == json.dumps(json.loads(text), separators=(",", ":"))
        assert json.loads(rows[kpi].data) == {"oee": 0.5}
        assert json.loads(rows[small].data) == {"device": "d"}
    finally:
        await buf.close()
    con = sqlite3.connect(tmp_path / "b.db")
    stored = dict(con.execute("SELECT seq, typeof(data) FROM outbox").fetchall())
    size = con.execute("SELECT length(data) FROM outbox WHERE seq = ?", (seq,)).fetchone()[0]
    con.close()
    assert stored == {seq: "blob", kpi: "text", small: "text"}
    assert size < len(text) / 2


async def test_telemetry_acks_are_batched_other_acks_are_not(tmp_path: Path) -> None:
    """Telemetry acks are batched; a KPI ack is not.

    Fetched telemetry acknowledged with ack_later leaves the backlog and every fetch at
    once, and its rows are deleted together within ACK_DELAY_S.
    """
    cfg = StorageConfig(path=tmp_path / "b.db")
    buf = Buffer(cfg, "gw")
    await buf.open()
    try:
        seqs = [
            await buf.publish("telemetry", "t", json.loads(telemetry(k)), priority=Priority.LOW)
            for k in range(5)
        ]
        kpi = await buf.publish("kpi", "k", {"oee": 0.5}, priority=Priority.HIGH, record_key="r")
        fetched = await buf.fetch_outbox(after=0, limit=10)
        assert [r.seq for r in fetched] == [*seqs, kpi]
        buf.ack_later(seqs[:3])
        buf.ack_later([kpi])
        assert [r.seq for r in await buf.fetch_outbox(after=0, limit=10)] == seqs[3:]
        assert buf.backlog == 2
        # The KPI delete ran before the fetch (FIFO); the telemetry deletes wait.
        assert count(cfg.path, "outbox", f"seq = {kpi}") == 0
        assert count(cfg.path, "kpi_records", "published IS NOT NULL") == 1
        assert count(cfg.path, "outbox", "kind = 'telemetry'") == 5
        for _ in range(int(ACK_DELAY_S * 20) + 20):  # bounded wait: the batch commits
            await asyncio.sleep(0.1)
            if count(cfg.path, "outbox", "kind = 'telemetry'") == 2:
                break
        assert count(cfg.path, "outbox", "kind = 'telemetry'") == 2
        assert buf.backlog == 2
        buf.ack_later(seqs[3:])  # pending at close: deleted by the close
    finally:
        await buf.close()
    assert count(cfg.path, "outbox") == 0
