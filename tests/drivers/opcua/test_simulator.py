"""Integration tests of the OPC-UA driver against the bundled simulator (``simulators.host``).

The simulator runs in-process with a manual clock: sim time moves only when the
test calls ``advance``, so counters change deterministically and nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from drivers.base import Backoff, run_link
from drivers.opcua.config import OpcuaDevice, OpcuaTag
from drivers.opcua.link import OpcuaLink
from drivers.opcua.nodes import parse_node_id
from edge_agent.model import CommsState, Quality
from tests.drivers.opcua.server_kit import Collector

pytestmark = pytest.mark.integration

SIM_NS = "urn:edge-agent:simulator"


def _device(endpoint: str) -> OpcuaDevice:
    tags = (
        OpcuaTag(name="good", node=parse_node_id(f"nsu={SIM_NS};s=M1.GoodCount"), queue_size=10),
        OpcuaTag(name="good_numeric", node=parse_node_id(f"nsu={SIM_NS};i=1003"), queue_size=10),
        OpcuaTag(name="running", node=parse_node_id(f"nsu={SIM_NS};s=M1.Running")),
        OpcuaTag(name="status_text", node=parse_node_id(f"nsu={SIM_NS};s=M1.StatusText")),
    )
    return OpcuaDevice(
        name="m1", endpoint=endpoint, tags=tags, interval_ms=100, timeout_ms=1000, watchdog_s=5
    )


async def test_simulator_counts_outage_and_restart(sim_factory: Any) -> None:
    """Counters flow; an outage reads BadNoCommunication; a server restart is survived."""
    sim = await sim_factory("steady", modbus=False, opcua=True)
    link = OpcuaLink([_device(sim.opcua_endpoint)])
    sink = Collector()
    task = asyncio.create_task(
        run_link(
            link,
            sink,
            tags_by_device={"m1": ("good", "good_numeric", "running", "status_text")},
            backoff=Backoff(initial_s=0.1, max_s=0.3),
        )
    )
    try:
        await sink.wait_for(lambda s: s.values("good") and s.values("good_numeric"))
        start = sink.values("good")[-1]
        await sim.advance(120.0)
        await sink.wait_for(lambda s: s.values("good")[-1] > start)
        assert sink.values("good")[-1] == sink.values("good_numeric")[-1]

        sim.machine("M1").set_outage(True)
        await sim.advance(1.0)
        await sink.wait_for(lambda s: any(r.reason == "BadNoCommunication" for r in s.readings))
        sim.machine("M1").set_outage(False)
        await sim.advance(1.0)

        before = len(sink.events)
        await sim.restart_opcua()
        await sink.wait_for(
            lambda s: len(s.events) >= before + 2 and s.events[-1].state is CommsState.UP, 15
        )
        mark = len(sink.readings)
        await sim.advance(120.0)
        await sink.wait_for(
            lambda s: any(r.tag == "good" and r.quality is Quality.GOOD for r in s.readings[mark:])
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [e.state for e in sink.events] == [CommsState.UP, CommsState.DOWN, CommsState.UP]
    outage = [r for r in sink.readings if r.reason == "BadNoCommunication"]
    assert outage
    assert all(r.value is None and r.quality is Quality.BAD for r in outage)
    assert all(r.source_ts is not None for r in sink.readings if r.quality is Quality.GOOD)
