"""Reload keeps every invariant: an in-process runtime against the simulator and a broker.

The runtime's own reload path (what SIGHUP triggers) is called while its loops
run: a link replaced on the same endpoint never overlaps its predecessor (the
simulator's connection log says so), and telemetry pending when its engine is
replaced reaches the broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_gateway import count_values
from edge_agent.config import load_config
from edge_agent.runtime import Runtime
from simulators.host import SimulatorHost
from tests.plugins.broker import Mosquitto, MqttCollector

pytestmark = pytest.mark.integration

CONFIG = """
[agent]
id = "reload-gw"
site = "test"
state_dir = "{state}"
status_interval_s = 0.5

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}

[telemetry]
interval_s = {telemetry_s}

[devices.a]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:{port}"
unit_id = 1
interval_ms = {interval_ms}
addressing = "zero"
publish = "every"

[devices.a.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.a.tags.good]
table = "holding"
address = 10
type = "uint32"

[devices.a.tags.total]
table = "holding"
address = 14
type = "uint32"
"""

RunningAgent = Callable[..., Awaitable[Runtime]]


@pytest.fixture
async def agent(
    tmp_path: Path, mosquitto: Mosquitto, sim_factory: Callable[..., Awaitable[SimulatorHost]]
) -> AsyncIterator[tuple[Runtime, SimulatorHost, Callable[..., None]]]:
    """A running in-process agent on a real-clock simulator; ``write(**changes)`` edits its file."""
    sim = await sim_factory("steady", manual=False)
    path = tmp_path / "agent.toml"
    settings: dict[str, Any] = {
        "state": tmp_path / "state",
        "mqtt_port": mosquitto.port,
        "port": sim.modbus_port,
        "interval_ms": 50,
        "telemetry_s": 3600,
    }

    def write(**changes: Any) -> None:
        settings.update(changes)
        path.write_text(CONFIG.format(**settings))

    write()
    rt = Runtime(load_config(path), install_signals=False)
    task = asyncio.create_task(rt.run())
    try:
        yield rt, sim, write
    finally:
        rt.request_stop()
        assert await asyncio.wait_for(task, 20) == 0


async def until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait (bounded) until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def telemetry(msgs: list[Any]) -> list[Any]:
    """The telemetry messages among what a collector received."""
    return [m for m in msgs if not m.retain and m.json().get("kind") == "telemetry"]


def requests(rt: Runtime, device: str) -> int:
    diag = rt.links.diagnostics().get(device)
    return 0 if diag is None else diag.requests


async def test_a_link_replaced_on_its_endpoint_closes_before_the_new_one_connects(
    agent: tuple[Runtime, SimulatorHost, Callable[..., None]],
) -> None:
    """Reload replaces a polled link: the simulator saw one connection end before the next."""
    rt, sim, write = agent
    assert sim.modbus is not None
    await until(lambda: requests(rt, "a") > 20)
    write(interval_ms=40)  # same endpoint, changed device: the link is replaced
    assert await rt.reload()
    await until(lambda: requests(rt, "a") > 20)
    conns = sim.modbus.connections
    assert len(conns) == 2, conns
    old, new = conns
    assert old.closed is not None
    assert old.closed <= new.opened  # never two connections at once
    assert old.requests > 20
    assert new.requests > 0


async def test_an_unchanged_link_keeps_its_connection_across_reload(
    agent: tuple[Runtime, SimulatorHost, Callable[..., None]],
) -> None:
    """Reload with the devices unchanged (compared by value) keeps the link and its connection."""
    rt, sim, write = agent
    assert sim.modbus is not None
    await until(lambda: requests(rt, "a") > 5)
    write(telemetry_s=1800)
    assert await rt.reload()
    before = requests(rt, "a")
    await until(lambda: requests(rt, "a") > before + 5)
    assert len(sim.modbus.connections) == 1


async def test_telemetry_pending_when_its_engine_is_replaced_reaches_the_broker(
    agent: tuple[Runtime, SimulatorHost, Callable[..., None]], mosquitto: Mosquitto
) -> None:
    """Values waiting for the next publish interval are published when a reload replaces it."""
    rt, _sim, write = agent
    with MqttCollector("127.0.0.1", mosquitto.port, "#") as collector:
        await until(
            lambda: (rt.telemetry.engine is not None) and rt.telemetry.engine.pending_values > 50
        )
        engine = rt.telemetry.engine
        assert engine is not None
        assert telemetry(collector.snapshot()) == []  # the hour-long interval has not come
        write(telemetry_s=1800)
        assert await rt.reload()
        # Readings polled until the reload completes belong to the replaced engine; the
        # engine stamps reading times in whole milliseconds (rounded).
        reloaded_at = time.time() + 0.001
        pending = engine.pending_values
        assert pending == 0  # the replaced engine gave everything up
        assert rt.telemetry.engine is not engine

        def before_reload(msgs: list[Any]) -> int:
            n = 0
            for m in telemetry(msgs):
                values, newest, _ = count_values(m.json()["data"])
                assert newest <= reloaded_at
                n += values
            return n

        assert await asyncio.to_thread(
            collector.wait_for, lambda msgs: before_reload(msgs) > 50, 15.0
        )
        assert engine.stats.dropped_overflow == 0
