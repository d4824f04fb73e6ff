"""Chaos (d): the disk budget is reached while the broker is away.

Raw readings keep pouring in and KPI records keep being produced; the budget
forces eviction. Oldest readings must be dropped and counted, the files must stay
within the budget, and no unpublished KPI record may be lost: all arrive once the
broker is back.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer, Priority, StorageConfig
from edge_agent.buffer.schema import plan_size
from edge_agent.model import Reading
from edge_agent.uplink import MqttConfig, Uplink
from tests.plugins.broker import MosquittoFactory, MqttCollector

pytestmark = pytest.mark.integration


async def test_budget_drops_readings_never_unpublished_kpis(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """Over a 2 MiB budget: readings evicted oldest-first and counted; every KPI delivered."""
    broker = mosquitto_factory(persistence=True)
    # A persistent subscriber registered before the outage receives what is sent after it.
    coll = MqttCollector(
        broker.host, broker.port, "edge/#", client_id="budget-sub", clean=False
    ).start()
    broker.stop()
    cfg = StorageConfig(path=tmp_path / "b.db", max_mb=2, flush_interval_ms=20)
    buf = Buffer(cfg, "gw1")
    await buf.open()
    up = Uplink(
        MqttConfig(port=broker.port, reconnect_min_s=0.2, reconnect_max_s=0.5), buf, "gw1", "lab"
    )
    task = asyncio.create_task(up.run())
    kpis: list[int] = []
    base = time.time()
    try:
        for batch in range(60):  # 60 x 2000 readings ~ 8 MB of rows into a 2 MiB budget
            buf.add_readings(
                [
                    Reading(
                        device="plc1",
                        tag=f"t{i % 20}",
                        value=i * 0.5,
                        ts=base + batch * 2000 + i,
                        mono=float(i),
                    )
                    for i in range(2000)
                ]
            )
            if batch % 3 == 0:
                kpis.append(
                    await buf.publish(
                        "kpi",
                        up.topics.kpi(machine="press1", window_kind="hour"),
                        {"batch": batch},
                        priority=Priority.HIGH,
                        record_key=f"press1|hour|{batch}|0",
                    )
                )
            await buf.flush()
        await buf.run_maintenance()
        stats = buf.stats()
        assert stats["dropped"].get("readings", 0) > 0, stats
        assert stats["disk_full"] is False
        size = plan_size(cfg.max_bytes)
        assert cfg.path.stat().st_size <= size.max_page_count * 4096
        assert stats["backlog"] == len(kpis)

        broker.start()
        deadline = time.monotonic() + 15
        while buf.backlog and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert buf.backlog == 0
        assert up.state()["published"] == len(kpis)

        def all_kpis(msgs: list) -> bool:  # type: ignore[type-arg]
            return set(kpis) <= {json.loads(m.payload).get("seq") for m in msgs}

        assert await asyncio.to_thread(coll.wait_for, all_kpis, 15)
        con = sqlite3.connect(cfg.path)
        published = con.execute(
            "SELECT count(*) FROM kpi_records WHERE published IS NOT NULL"
        ).fetchone()[0]
        con.close()
        assert published == len(kpis)
    finally:
        await up.stop()
        await task
        await buf.close()
        coll.stop()
