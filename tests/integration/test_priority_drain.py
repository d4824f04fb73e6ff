"""Priority drain against a real Mosquitto: after an outage, KPI and stop rows overtake telemetry.

The backlog is built while the broker is stopped (telemetry-heavy, a few KPI
records and stop events spread over it); when the broker comes back the subscriber
(a persistent QoS 1 session, so it misses nothing during the restart) must see
every KPI/stop message before the bulk of the telemetry, every seq, each class in
seq order, and duplicates only as QoS 1 allows (byte-identical re-sends).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path

import pytest

from edge_agent.buffer import Outgoing, Priority
from edge_agent.uplink import DrainOrder, MqttConfig
from tests.edge_agent.uplink.harness import first_occurrences, running_agent, seen_all
from tests.plugins.broker import MosquittoFactory, MqttCollector, Received

pytestmark = pytest.mark.integration

TELEMETRY = 3000
KPI_EVERY = 150  # one KPI record per 150 telemetry messages (20 in all)
STOP_EVERY = 600  # one stop event per 600 telemetry messages (5 in all)


def by_seq(messages: list[Received]) -> dict[int, list[bytes]]:
    """Payloads per seq, in arrival order (more than one = a QoS 1 re-send)."""
    out: dict[int, list[bytes]] = defaultdict(list)
    for m in messages:
        seq = json.loads(m.payload).get("seq")
        if isinstance(seq, int):
            out[seq].append(m.payload)
    return out


@pytest.mark.parametrize("order", [DrainOrder.OLDEST_FIRST, DrainOrder.LIVE_FIRST])
async def test_kpi_and_stop_overtake_the_telemetry_backlog(
    tmp_path: Path, mosquitto_factory: MosquittoFactory, order: DrainOrder
) -> None:
    """After a broker restart every KPI/stop message arrives before 5 % of the telemetry backlog."""
    broker = mosquitto_factory(persistence=True)
    config = MqttConfig(
        host=broker.host,
        port=broker.port,
        reconnect_min_s=0.2,
        reconnect_max_s=1.0,
        max_in_flight=20,
        drain_order=order,
    )
    coll = MqttCollector(
        broker.host, broker.port, "edge/#", client_id=f"sub-prio-{order.value}", clean=False
    ).start()
    kind_of: dict[int, str] = {}
    try:
        async with running_agent(tmp_path / "b.db", config) as agent:
            assert await agent.wait(lambda: agent.uplink.state()["connected"], 10)
            broker.stop()
            assert await agent.wait(lambda: not agent.uplink.state()["connected"], 5)
            topics = agent.uplink.topics
            batch: list[Outgoing] = []
            for i in range(1, TELEMETRY + 1):
                batch.append(
                    Outgoing(
                        kind="telemetry",
                        topic=topics.telemetry(device="plc1"),
                        data={"device": "plc1", "values": {"count": i}},
                        priority=Priority.LOW,
                    )
                )
                if i % KPI_EVERY == 0:
                    batch.append(
                        Outgoing(
                            kind="kpi",
                            topic=topics.kpi(machine="press1", window_kind="hour"),
                            data={"machine": "press1", "n": i},
                            priority=Priority.HIGH,
                        )
                    )
                if i % STOP_EVERY == 0:
                    batch.append(
                        Outgoing(
                            kind="stop",
                            topic=topics.stop(machine="press1"),
                            data={"machine": "press1", "n": i},
                            priority=Priority.HIGH,
                        )
                    )
                if len(batch) >= 250:
                    seqs = await agent.buffer.publish_many(batch)
                    kind_of.update(zip(seqs, (m.kind for m in batch), strict=True))
                    batch = []
            if batch:
                seqs = await agent.buffer.publish_many(batch)
                kind_of.update(zip(seqs, (m.kind for m in batch), strict=True))
            assert agent.buffer.backlog == len(kind_of)
            broker.start()
            assert await agent.wait(lambda: agent.buffer.backlog == 0, 20), broker.log_text
            assert await asyncio.to_thread(coll.wait_for, seen_all(set(kind_of)), 15)
    finally:
        coll.stop()

    got = coll.snapshot()
    copies = by_seq(got)
    # No message missing; a duplicate is only a byte-identical QoS 1 re-send.
    assert set(kind_of) <= set(copies)
    assert all(len(set(payloads)) == 1 for payloads in copies.values())
    arrival = [s for s in first_occurrences(_seqs(got)) if s in kind_of]
    important = [s for s in arrival if kind_of[s] in ("kpi", "stop")]
    telemetry = [s for s in arrival if kind_of[s] == "telemetry"]
    assert len(important) == TELEMETRY // KPI_EVERY + TELEMETRY // STOP_EVERY
    # Within a class, seq order (oldest_first) - also live_first: the whole backlog predates
    # the connection, so there is no live lane to interleave.
    assert important == sorted(important)
    assert telemetry == sorted(telemetry)
    last_important = max(arrival.index(s) for s in important)
    telemetry_before = sum(1 for s in arrival[:last_important] if kind_of[s] == "telemetry")
    assert telemetry_before < TELEMETRY * 0.05, (last_important, telemetry_before)
    # And telemetry was not starved meanwhile: it got its share while KPI/stop waited.
    assert telemetry_before >= 1


def _seqs(messages: list[Received]) -> list[int]:
    """Seqs of data messages in arrival order (duplicates kept)."""
    out = []
    for m in messages:
        seq = json.loads(m.payload).get("seq")
        if isinstance(seq, int):
            out.append(seq)
    return out
