"""A returning broker is found within a few seconds, however long it was away.

The real uplink (default ``[mqtt]`` reconnect settings) against a real Mosquitto
that is stopped and started again on the same port. During the outage a
listener on that port accepts and drops each connection attempt, so the test
sees every attempt: the broker comes back right after the uplink's fourth
failed attempt, when an uncapped doubling backoff would wait 8-16 s more.
The first message queued during the outage must be acknowledged within
``probe_interval_s`` (plus connect time) of the broker accepting connections.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from edge_agent.buffer import Priority
from edge_agent.uplink import MqttConfig
from edge_agent.uplink.client import Reconnect
from tests.edge_agent.uplink.harness import running_agent
from tests.plugins.broker import MosquittoFactory

ATTEMPTS = 4


class AttemptCounter:
    """Listens on the broker's port while it is down; accepts and drops every connection."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.attempts: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="attempts", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.attempts.append(time.monotonic())
            conn.close()

    def wait(self, count: int, timeout: float) -> bool:
        """Wait (bounded) until ``count`` attempts were seen."""
        deadline = time.monotonic() + timeout
        while len(self.attempts) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(self.attempts) >= count

    def close(self) -> None:
        """Stop listening (the port is free for the broker again)."""
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.mark.integration
async def test_first_publish_within_seconds_of_the_broker_returning(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """After four failed attempts the broker returns: the queued message is acked within ~5 s."""
    broker = mosquitto_factory()
    config = MqttConfig(port=broker.port)  # defaults: reconnect 1..60 s, probe_interval_s 5
    async with running_agent(tmp_path / "b.db", config) as agent:
        topic = agent.uplink.topics.health()
        await agent.buffer.publish("health", topic, {"n": 0}, priority=Priority.MEDIUM)
        assert await agent.wait(lambda: agent.buffer.backlog == 0, 10)
        await asyncio.to_thread(broker.stop)
        counter = AttemptCounter(broker.port)
        try:
            await agent.buffer.publish("health", topic, {"n": 1}, priority=Priority.MEDIUM)
            assert await asyncio.to_thread(counter.wait, ATTEMPTS, 60)
        finally:
            counter.close()
        await asyncio.to_thread(broker.start)  # returns once it accepts connections
        back = time.monotonic()
        assert await agent.wait(lambda: agent.buffer.backlog == 0, 30)
        latency = time.monotonic() - back
    gaps = [b - a for a, b in zip(counter.attempts, counter.attempts[1:], strict=False)]
    print(f"broker-return latency {latency:.2f} s; attempt gaps {[round(g, 2) for g in gaps]}")
    assert latency <= config.probe_interval_s + 1.5
    assert all(g <= config.probe_interval_s + 0.5 for g in gaps)


def test_probe_delays_are_bounded_and_spread_across_a_fleet() -> None:
    """1,000 gateways failing for an hour: every probe within bounds, no second holds > 30 %.

    The first attempts after the return spread over the probe interval (about 27 % per
    second in its first half), instead of arriving in the same second.
    """
    rng = random.Random(22)
    returns_at = 3600.0
    first_after: list[float] = []
    for _ in range(1000):
        policy = Reconnect(1.0, 60.0, 5.0, rng=random.Random(rng.random()))
        t = rng.uniform(0, 1)  # the outage starts at a slightly different time for each
        while t < returns_at:
            delay = policy.next_delay(unreachable=True)
            assert 0.5 <= delay <= 5.0
            t += delay
        first_after.append(t - returns_at)
    assert max(first_after) <= 5.0
    per_second = Counter(int(x) for x in first_after)
    assert max(per_second.values()) <= 300


def test_a_refusing_broker_is_not_hammered() -> None:
    """Credentials or TLS refused: the delay keeps doubling up to reconnect_max_s."""
    policy = Reconnect(1.0, 60.0, 5.0, rng=random.Random(1))
    delays = [policy.next_delay(unreachable=False) for _ in range(10)]
    assert delays[-1] >= 30.0
    policy.reset()
    assert policy.next_delay(unreachable=True) <= 1.0  # after a good connection: short again


def test_a_broker_gone_for_days_does_not_overflow_the_delay() -> None:
    """Thousands of failed attempts (a broker gone for days) keep a bounded delay, no error."""
    policy = Reconnect(1.0, 60.0, 5.0, rng=random.Random(3))
    for _ in range(5000):
        assert 0.5 <= policy.next_delay(unreachable=True) <= 5.0
    assert 30.0 <= policy.next_delay(unreachable=False) <= 60.0
