"""Chaos (a): the broker is stopped while messages are produced, then restarted.

Every message produced during the outage must arrive, in order, none missing
(checked by seq). Short variant: 10 s outage; soak variant: 2 minutes.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer, Priority, StorageConfig
from edge_agent.uplink import MqttConfig, Uplink
from tests.edge_agent.uplink.harness import seen_all
from tests.plugins.broker import MosquittoFactory, MqttCollector


def first_occurrences(values: list[int]) -> list[int]:
    seen: set[int] = set()
    return [v for v in values if not (v in seen or seen.add(v))]  # type: ignore[func-returns-value]


async def outage(tmp_path: Path, factory: MosquittoFactory, outage_s: float, rate: float) -> None:
    broker = factory(persistence=True)
    coll = MqttCollector(
        broker.host, broker.port, "edge/#", client_id="outage-sub", clean=False
    ).start()
    buf = Buffer(StorageConfig(path=tmp_path / "b.db"), "gw1")
    await buf.open()
    up = Uplink(
        MqttConfig(port=broker.port, reconnect_min_s=0.5, reconnect_max_s=2.0), buf, "gw1", "lab"
    )
    task = asyncio.create_task(up.run())
    topic = up.topics.kpi(machine="press1", window_kind="shift")
    produced: list[int] = []

    async def produce_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            produced.append(
                await buf.publish("kpi", topic, {"n": len(produced)}, priority=Priority.HIGH)
            )
            await asyncio.sleep(1.0 / rate)

    try:
        await produce_for(1.0)
        await asyncio.to_thread(broker.stop)
        during_start = len(produced)
        await produce_for(outage_s)
        during = produced[during_start:]
        assert up.state()["connected"] is False
        assert buf.backlog >= len(during)
        await asyncio.to_thread(broker.start)
        await produce_for(1.0)
        deadline = time.monotonic() + 30
        while buf.backlog and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert buf.backlog == 0
        assert await asyncio.to_thread(coll.wait_for, seen_all(set(produced)), 60)
    finally:
        await up.stop()
        await task
        await buf.close()
        coll.stop()
    order = first_occurrences(
        [json.loads(m.payload)["seq"] for m in coll.snapshot() if m.topic.endswith("/kpi/shift")]
    )
    assert order == produced, "messages missing or out of order"
    assert during, "nothing was produced during the outage"


@pytest.mark.integration
async def test_broker_outage_10s_everything_arrives_in_order(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """A 10 s broker outage: all messages produced during it arrive, in seq order, none missing."""
    await outage(tmp_path, mosquitto_factory, outage_s=10.0, rate=50)


@pytest.mark.integration
@pytest.mark.soak
@pytest.mark.timeout(400)
async def test_broker_outage_2min_everything_arrives_in_order(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """A 2 minute broker outage: every message produced during it arrives, in seq order."""
    await outage(tmp_path, mosquitto_factory, outage_s=120.0, rate=100)
