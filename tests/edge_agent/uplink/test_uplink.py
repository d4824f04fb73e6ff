"""Uplink against a real Mosquitto on loopback: order, acks, status, outages, sessions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from edge_agent.buffer import Priority
from edge_agent.uplink import DrainOrder, MqttConfig, MqttProtocol, SessionMode
from tests.plugins.broker import Mosquitto, MosquittoFactory, MqttCollector

from .harness import first_occurrences, running_agent, seqs
from .schemas import validate

pytestmark = pytest.mark.integration


def mqtt_config(broker: Mosquitto, **kw: object) -> MqttConfig:
    return MqttConfig(
        host=broker.host, port=broker.port, reconnect_min_s=0.2, reconnect_max_s=1.0, **kw
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", [MqttProtocol.V5, MqttProtocol.V311])
async def test_publishes_in_order_and_deletes_on_puback(
    tmp_path: Path, mosquitto: Mosquitto, protocol: MqttProtocol
) -> None:
    """Messages arrive in seq order, match their schema, and leave the outbox once acked."""
    with MqttCollector(mosquitto.host, mosquitto.port, "edge/#") as coll:
        async with running_agent(
            tmp_path / "b.db", mqtt_config(mosquitto, protocol=protocol)
        ) as agent:
            topic = agent.uplink.topics.stop(machine="press1")
            for i in range(50):
                await agent.buffer.publish(
                    "stop",
                    topic,
                    {
                        "machine": "press1",
                        "event_id": f"press1@2026-11-26T05:{i:02d}:00.000Z",
                        "start": f"2026-11-26T05:{i:02d}:00.000Z",
                        "end": None,
                        "duration_s": None,
                        "category": "pending",
                        "code": None,
                        "fault_name": None,
                    },
                    priority=Priority.HIGH,
                )
            assert await asyncio.to_thread(coll.wait_for, lambda m: len(seqs(m)) >= 50, 10)
            assert await agent.wait(lambda: agent.buffer.backlog == 0, 5)
            state = agent.uplink.state()
            assert state["connected"] is True
            assert state["published"] == 50
            assert state["in_flight"] == 0
        got = coll.snapshot()
    assert seqs(got) == list(range(1, 51))
    for message in got:
        validate(json.loads(message.payload))
    statuses = [
        json.loads(m.payload)["data"]["state"] for m in got if m.topic == "edge/lab/gw1/status"
    ]
    assert statuses[0] == "online"
    # stop() published the retained offline status before disconnecting.
    with MqttCollector(mosquitto.host, mosquitto.port, "edge/lab/gw1/status") as late:
        assert late.wait_count(1, 5)
        retained = late.snapshot()[0]
    assert retained.retain is True
    assert json.loads(retained.payload)["data"]["state"] == "offline"


async def test_buffers_while_broker_is_down_then_delivers(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """Messages published before the broker exists are all delivered, in order, once it starts."""
    broker = mosquitto_factory(start=False)
    async with running_agent(tmp_path / "b.db", mqtt_config(broker)) as agent:
        for i in range(30):
            await agent.buffer.publish(
                "health", agent.uplink.topics.health(), {"i": i}, priority=Priority.MEDIUM
            )
        await asyncio.sleep(0.3)
        assert agent.uplink.state()["connected"] is False
        assert "refused" in (agent.uplink.state()["last_error"] or "")
        broker.start()
        with MqttCollector(broker.host, broker.port, "edge/#") as coll:
            # The collector may subscribe late; whatever it sees must be ordered.
            assert await agent.wait(lambda: agent.buffer.backlog == 0, 10)
        got = seqs(coll.snapshot())
    assert got == sorted(got)
    assert agent.uplink.state()["published"] == 30


async def test_outage_mid_stream_resends_in_order(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """After a broker restart the backlog drains and the subscriber has every seq, in order."""
    broker = mosquitto_factory(persistence=True)
    coll = MqttCollector(
        broker.host, broker.port, "edge/#", client_id="sub-outage", clean=False
    ).start()
    try:
        async with running_agent(tmp_path / "b.db", mqtt_config(broker)) as agent:
            topic = agent.uplink.topics.health()
            for i in range(20):
                await agent.buffer.publish("health", topic, {"i": i}, priority=Priority.MEDIUM)
            broker.stop()
            for i in range(20, 60):
                await agent.buffer.publish("health", topic, {"i": i}, priority=Priority.MEDIUM)
            assert await agent.wait(lambda: not agent.uplink.state()["connected"], 5)
            broker.start()
            assert await agent.wait(lambda: agent.buffer.backlog == 0, 15)
            assert await asyncio.to_thread(
                coll.wait_for, lambda m: set(range(1, 61)) <= set(seqs(m)), 15
            )
    finally:
        coll.stop()
    order = first_occurrences(seqs(coll.snapshot()))
    assert order == list(range(1, 61))


async def test_restart_resumes_from_outbox(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Rows left in the outbox by a previous run are published first after a restart."""
    from edge_agent.buffer import Buffer, StorageConfig

    db = tmp_path / "b.db"
    buf = Buffer(StorageConfig(path=db), "gw1")
    await buf.open()
    for i in range(10):
        await buf.publish("health", "edge/lab/gw1/health", {"i": i}, priority=Priority.MEDIUM)
    await buf.close()
    with MqttCollector(mosquitto.host, mosquitto.port, "edge/#") as coll:
        async with running_agent(db, mqtt_config(mosquitto)) as agent:
            await agent.buffer.publish(
                "health", agent.uplink.topics.health(), {"i": 10}, priority=Priority.MEDIUM
            )
            assert await asyncio.to_thread(coll.wait_for, lambda m: len(seqs(m)) >= 11, 10)
    assert seqs(coll.snapshot()) == list(range(1, 12))


@pytest.mark.parametrize(
    ("protocol", "session", "expected"),
    [
        (MqttProtocol.V5, SessionMode.PERSISTENT, True),
        (MqttProtocol.V311, SessionMode.PERSISTENT, True),
        (MqttProtocol.V5, SessionMode.CLEAN, False),
    ],
)
async def test_session_is_resumed_after_reconnect(
    tmp_path: Path,
    mosquitto_factory: MosquittoFactory,
    protocol: MqttProtocol,
    session: SessionMode,
    expected: bool,
) -> None:
    """A persistent session is present again after a broker restart; a clean one is not."""
    broker = mosquitto_factory(persistence=True)
    config = mqtt_config(broker, protocol=protocol, session=session)
    async with running_agent(tmp_path / "b.db", config) as agent:
        assert await agent.wait(lambda: agent.uplink.state()["connected"], 5)
        broker.stop()
        assert await agent.wait(lambda: not agent.uplink.state()["connected"], 5)
        broker.start()
        assert await agent.wait(lambda: agent.uplink.state()["connects"] == 2, 10)
        assert agent.uplink.state()["session_present"] is expected


async def test_live_first_delivers_backlog_and_live(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """live_first sends new messages before the backlog is done, and still delivers everything."""
    broker = mosquitto_factory(start=False)
    config = mqtt_config(broker, drain_order=DrainOrder.LIVE_FIRST, max_in_flight=4)
    async with running_agent(tmp_path / "b.db", config) as agent:
        topic = agent.uplink.topics.health()
        for i in range(400):
            await agent.buffer.publish("health", topic, {"i": i}, priority=Priority.MEDIUM)
        broker.start()
        with MqttCollector(broker.host, broker.port, "edge/#") as coll:
            assert await agent.wait(lambda: agent.uplink.state()["connected"], 10)
            live = await agent.buffer.publish(
                "health", topic, {"live": True}, priority=Priority.MEDIUM
            )
            assert await agent.wait(lambda: agent.buffer.backlog == 0, 15)
            assert await asyncio.to_thread(coll.wait_for, lambda m: live in seqs(m), 5)
        order = seqs(coll.snapshot())
    # The live message overtook the tail of the backlog.
    assert order.index(live) < len(order) - 1


async def test_rejected_publish_stays_in_outbox(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """Under MQTT 5 a PUBACK with a failure reason (ACL deny) does not delete the row."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite edge/lab/gw1/status\ntopic readwrite edge/lab/gw1/health\n")
    broker = mosquitto_factory(extra=(f"acl_file {acl}",))
    async with running_agent(tmp_path / "b.db", mqtt_config(broker)) as agent:
        await agent.buffer.publish(
            "stop", agent.uplink.topics.stop(machine="m"), {"x": 1}, priority=Priority.HIGH
        )
        await agent.buffer.publish(
            "health", agent.uplink.topics.health(), {"x": 2}, priority=Priority.MEDIUM
        )
        assert await agent.wait(lambda: agent.uplink.state()["rejected"] >= 1, 15)
        assert await agent.wait(lambda: agent.uplink.state()["published"] >= 1, 15)
        assert agent.buffer.backlog == 1
        assert "rejected" in (agent.uplink.state()["last_error"] or "")


async def test_password_from_env_authenticates_and_wrong_one_is_refused(
    tmp_path: Path, mosquitto_factory: MosquittoFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Username + password_env logs in; a wrong password is refused, reported without it."""
    import subprocess

    pwfile = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(pwfile), "edge", "right-pw"], check=True, timeout=10
    )
    broker = mosquitto_factory(extra=("allow_anonymous false", f"password_file {pwfile}"))
    config = mqtt_config(broker, username="edge", password_env="EDGE_TEST_MQTT_PW")  # noqa: S106
    monkeypatch.setenv("EDGE_TEST_MQTT_PW", "wrong-pw")
    async with running_agent(tmp_path / "a.db", config) as agent:
        assert await agent.wait(lambda: "refused" in (agent.uplink.state()["last_error"] or ""), 5)
        assert agent.uplink.state()["connected"] is False
        assert "wrong-pw" not in str(agent.uplink.state())
    monkeypatch.setenv("EDGE_TEST_MQTT_PW", "right-pw")
    async with running_agent(tmp_path / "b.db", config) as agent:
        assert await agent.wait(lambda: agent.uplink.state()["connected"], 5)
