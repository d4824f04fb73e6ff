"""Integration tests of reconnection: server restart, namespaces, silent-subscription watchdog.

Each test owns its server (they stop and restart it). The link runs under
:func:`drivers.base.run_link`, the same supervisor the agent uses, with a
short backoff so the tests stay fast.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from asyncua import ua

from drivers.base import Backoff, run_link
from drivers.opcua.config import OpcuaDevice, OpcuaTag
from drivers.opcua.link import OpcuaLink
from drivers.opcua.nodes import parse_browse_path, parse_node_id
from edge_agent.model import CommsState, Quality
from tests.drivers.opcua.server_kit import NS_URI, Collector, free_port, start_server

pytestmark = pytest.mark.integration

TAGS = (
    OpcuaTag(name="good", node=parse_node_id(f"nsu={NS_URI};s=M1.GoodCount"), queue_size=10),
    OpcuaTag(name="product", browse_path=parse_browse_path("Objects/M1/Product")),
)


def _device(endpoint: str, watchdog_s: float = 5.0) -> OpcuaDevice:
    return OpcuaDevice(
        name="m1",
        endpoint=endpoint,
        tags=TAGS,
        interval_ms=100,
        watchdog_s=watchdog_s,
        timeout_ms=1000,
    )


async def test_server_restart_resubscribes_and_reresolves_namespaces() -> None:
    """After a restart with a new namespace index the link re-subscribes; DOWN, bad, UP."""
    port = free_port()
    sim = await start_server(port, filler_namespaces=0)
    assert sim.ns == 2
    link = OpcuaLink([_device(sim.endpoint)])
    sink = Collector()
    task = asyncio.create_task(
        run_link(
            link,
            sink,
            tags_by_device={"m1": link.device_names and ("good", "product")},
            backoff=Backoff(initial_s=0.1, max_s=0.3),
        )
    )
    try:
        await sink.wait_for(lambda s: 0 in s.values("good") and "widget" in s.values("product"))
        await sim.write("good", 5, ua.VariantType.UInt32)
        await sink.wait_for(lambda s: 5 in s.values("good"))
        await sim.stop()
        await sink.wait_for(lambda s: any(e.state is CommsState.DOWN for e in s.events))
        down_at = len(sink.readings)
        # Same port, but two more namespaces first: the URI now has index 4.
        sim = await start_server(port, filler_namespaces=2)
        assert sim.ns == 4
        await sim.write("good", 1000, ua.VariantType.UInt32)
        await sink.wait_for(lambda s: 1000 in s.values("good"), timeout=15)
        await sim.write("good", 1001, ua.VariantType.UInt32)
        await sink.wait_for(lambda s: 1001 in s.values("good"))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sim.stop()
    assert [e.state for e in sink.events] == [CommsState.UP, CommsState.DOWN, CommsState.UP]
    gap = sink.readings[down_at - 2 : down_at]
    assert {r.tag for r in gap} == {"good", "product"}
    assert all(r.quality is Quality.BAD and r.value is None for r in gap)
    assert link.tag_metadata()["m1"]["good"]["node_id"] == "ns=4;s=M1.GoodCount"
    after = [r.value for r in sink.readings[down_at:] if r.tag == "good"]
    assert after[-2:] == [1000, 1001]


async def test_connected_but_silent_subscription_rebuilds_session() -> None:
    """No data and no keepalive beyond watchdog_s rebuilds the session, which delivers data."""
    sim = await start_server(free_port())
    link = OpcuaLink([_device(sim.endpoint, watchdog_s=1.0)])
    sink = Collector()
    task = asyncio.create_task(
        run_link(
            link,
            sink,
            tags_by_device={"m1": ("good", "product")},
            backoff=Backoff(initial_s=0.1, max_s=0.2),
        )
    )
    try:
        await sink.wait_for(lambda s: 0 in s.values("good"))
        loop = asyncio.get_running_loop()
        assert sim.silence_subscriptions() == 1
        silenced_at = loop.time()
        await sink.wait_for(lambda s: any(e.state is CommsState.DOWN for e in s.events), timeout=5)
        detected_after = loop.time() - silenced_at
        await sink.wait_for(lambda s: [e.state for e in s.events][-1] is CommsState.UP, timeout=5)
        await sim.write("good", 77, ua.VariantType.UInt32)
        await sink.wait_for(lambda s: 77 in s.values("good"))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sim.stop()
    down = next(e for e in sink.events if e.state is CommsState.DOWN)
    assert "connected but silent" in down.reason
    assert 0.5 < detected_after < 3.0
    assert link.diagnostics()["m1"].errors.get("watchdog") == 1
