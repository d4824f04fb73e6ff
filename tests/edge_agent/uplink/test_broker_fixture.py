"""Self-tests of the broker fixture plugin (tests/plugins/broker.py)."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from tests.plugins.broker import Mosquitto, MosquittoFactory, MqttCollector

pytestmark = pytest.mark.integration


def _publish(broker: Mosquitto, topic: str, payload: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_collector_receives_published_message(mosquitto: Mosquitto) -> None:
    """A message published to the fixture broker reaches a collector subscribed to it."""
    with MqttCollector(mosquitto.host, mosquitto.port, "t/#") as coll:
        _publish(mosquitto, "t/1", b"hello")
        assert coll.wait_count(1, 5)
    assert coll.snapshot()[0].payload == b"hello"


def test_restart_reuses_port_and_kill_stops(mosquitto_factory: MosquittoFactory) -> None:
    """stop()/start() keeps the port and a new PID; kill() ends the process."""
    broker = mosquitto_factory(persistence=True)
    first_pid, port = broker.pid, broker.port
    broker.stop()
    assert not broker.running
    broker.start()
    assert broker.port == port
    assert broker.pid != first_pid
    with MqttCollector(broker.host, broker.port, "x") as coll:
        _publish(broker, "x", b"1")
        assert coll.wait_count(1, 5)
    broker.kill()
    assert not broker.running
