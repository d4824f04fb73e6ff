"""A poll whose blocks all decode travels as columns; anything else as a list of readings."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.modbus.link import ModbusLink, build_links
from edge_agent.columns import ColumnPoll
from edge_agent.model import Quality, Reading
from tests.drivers.modbus.conftest import make_device
from tests.drivers.modbus.fakeserver import Model, TcpServer

pytestmark = pytest.mark.integration


def _device(server: TcpServer, tags: dict[str, Any]) -> Any:
    return make_device(
        "m1",
        protocol="modbus_tcp",
        endpoint=f"127.0.0.1:{server.port}",
        unit_id=1,
        addressing="zero",
        interval_ms=100,
        timeout_ms=500,
        tags=tags,
    )


async def _two_polls(link: ModbusLink) -> list[Any]:
    await link.connect()
    try:
        return [(await link.poll()).batches[0] for _ in range(2)]
    finally:
        await link.close()


async def test_a_poll_of_three_blocks_is_one_column_poll(
    model: Model, tcp_server: TcpServer
) -> None:
    """Three block reads: three columns in read order, the readings the driver always gave."""
    unit = model.unit(1)
    unit.holding.update({i * 3: 1000 + i for i in range(100)})
    tags: dict[str, Any] = {f"t{i}": {"table": "holding", "address": i * 3} for i in range(100)}
    tags["scaled"] = {"table": "holding", "address": 1, "scale": 0.5}
    unit.holding[1] = 9
    (link,) = build_links([_device(tcp_server, tags)])
    first, second = await _two_polls(link)
    assert isinstance(first, ColumnPoll)
    assert first.device == "m1"
    assert len(first.columns) == 3
    assert [len(c.tags) for c in first.columns] == [43, 42, 16]
    times = [c.ts for c in first.columns]
    assert times == sorted(times)
    readings = list(first)
    assert len(readings) == len(first) == 101
    by_tag = {r.tag: r for r in readings}
    assert by_tag["t0"] == Reading("m1", "t0", 1000, times[0], first.columns[0].mono)
    assert by_tag["t99"].value == 1099
    assert by_tag["scaled"].value == 4.5
    assert all(r.quality is Quality.GOOD and r.reason == "" for r in readings)
    # The block's tag tuple is one object across polls: consumers cache by it.
    assert isinstance(second, ColumnPoll)
    assert [c.tags for c in second.columns] == [c.tags for c in first.columns]
    assert all(a.tags is b.tags for a, b in zip(first.columns, second.columns, strict=True))


async def test_a_poll_with_a_bad_tag_is_a_list_in_read_order(
    model: Model, tcp_server: TcpServer
) -> None:
    """A tag that does not decode: the poll is a plain list, good neighbours still good."""
    unit = model.unit(1)
    unit.holding.update({0: 7, 1: 0xFFFE, 2: 9})
    tags = {
        "before": {"table": "holding", "address": 0},
        "text": {"table": "holding", "address": 1, "type": "string", "length": 2},
        "after": {"table": "holding", "address": 2},
    }
    (link,) = build_links([_device(tcp_server, tags)])
    first, _ = await _two_polls(link)
    assert type(first) is list
    assert [(r.tag, r.quality) for r in first] == [
        ("before", Quality.GOOD),
        ("text", Quality.BAD),
        ("after", Quality.GOOD),
    ]
