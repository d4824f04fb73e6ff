"""Cross-check against a third-party implementation: the pymodbus 3.16 server (SimDevice)."""

from __future__ import annotations

from typing import Any

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from drivers.modbus.link import build_links
from edge_agent.model import CommsState, Quality
from tests.drivers.modbus.conftest import make_device
from tests.drivers.modbus.helpers import running, typed_tags

pytestmark = pytest.mark.integration


async def test_types_orders_and_illegal_address_against_pymodbus_server(
    unused_tcp_port: int,
) -> None:
    """Every type/order decodes from pymodbus' server, and its undefined address is isolated."""
    holding: dict[int, int] = {}
    tags, expected = typed_tags(holding)
    size = max(holding) + 2
    values = [holding.get(a, 0) for a in range(size)]
    device = SimDevice(
        id=1, simdata=[SimData(address=0, values=values, datatype=SimType.REGISTERS)]
    )
    server = ModbusTcpServer(device, address=("127.0.0.1", unused_tcp_port))
    await server.serve_forever(background=True)
    try:
        # 'beyond' is next to the last defined register: the planner puts it in the same block.
        tags["beyond"] = {"table": "holding", "address": size}
        dev: Any = make_device(
            protocol="modbus_tcp",
            endpoint=f"127.0.0.1:{unused_tcp_port}",
            unit_id=1,
            addressing="zero",
            interval_ms=200,
            timeout_ms=500,
            tags=tags,
        )
        (link,) = build_links([dev])
        async with running([link]) as sink:
            await sink.wait_for(lambda: len(sink.batches) >= 2, 10, "two cycles")
    finally:
        await server.shutdown()
    batch = {r.tag: r for r in sink.batches[0]}
    assert batch["beyond"].quality is Quality.BAD
    assert batch["beyond"].reason == "illegal address"
    good = {t: r.value for t, r in batch.items() if t != "beyond"}
    assert all(r.quality is Quality.GOOD for t, r in batch.items() if t != "beyond")
    assert good == pytest.approx(expected)
    assert sink.states("m1") == [CommsState.UP]
