"""ModbusLink over real loopback TCP against the fake server: types, coalescing, faults, cadence."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from drivers.modbus.link import ModbusLink, build_links
from drivers.modbus.planner import plan_device
from edge_agent.model import CommsState, Quality
from tests.drivers.modbus.conftest import make_device
from tests.drivers.modbus.fakeserver import Model, TcpServer
from tests.drivers.modbus.helpers import running, typed_tags
from tests.drivers.test_contract import ContractCase, check_link_contract

pytestmark = pytest.mark.integration


def tcp(server: TcpServer, name: str = "m1", unit_id: int = 1, **over: Any) -> Any:
    data: dict[str, Any] = {
        "protocol": "modbus_tcp",
        "endpoint": f"127.0.0.1:{server.port}",
        "unit_id": unit_id,
        "addressing": "zero",
        "interval_ms": 100,
        "timeout_ms": 200,
    }
    data.update(over)
    return make_device(name, **data)


async def test_every_type_and_order_over_tcp(model: Model, tcp_server: TcpServer) -> None:
    """Every numeric type in all four orders, string, bit, bools and scaling decode correctly."""
    unit = model.unit(1)
    tags, expected = typed_tags(unit.holding)
    unit.coils[5] = True
    unit.discrete[7] = True
    unit.input[3] = 42
    tags |= {
        "coil": {"table": "coil", "address": 5},
        "di": {"table": "discrete_input", "address": 7},
        "ir": {"table": "input", "address": 3, "unit": "bar"},
    }
    expected |= {"coil": True, "di": True, "ir": 42}
    dev = tcp(tcp_server, tags=tags)
    (link,) = build_links([dev])
    async with running([link]) as sink:
        await sink.wait_for(lambda: len(sink.batches) >= 1, 5, "one batch")
    values = {r.tag: r.value for r in sink.batches[0]}
    assert all(r.quality is Quality.GOOD for r in sink.batches[0])
    assert values == pytest.approx(expected)
    # One request per table: everything is contiguous and well under the limits.
    first_cycle = model.log[:4]
    assert sorted(r.function for r in first_cycle) == [1, 2, 3, 4]


async def test_undecodable_tag_is_bad_and_its_block_neighbours_good(
    model: Model, tcp_server: TcpServer
) -> None:
    """A value that does not decode (invalid UTF-8) marks that tag bad, not its block."""
    unit = model.unit(1)
    unit.holding.update({0: 7, 1: 0xFFFE, 2: 9})
    tags = {
        "before": {"table": "holding", "address": 0},
        "text": {"table": "holding", "address": 1, "type": "string", "length": 2},
        "after": {"table": "holding", "address": 2},
    }
    (link,) = build_links([tcp(tcp_server, tags=tags)])
    async with running([link]) as sink:
        await sink.wait_for(lambda: len(sink.batches) >= 1, 5, "one batch")
    batch = {r.tag: r for r in sink.batches[0]}
    assert (batch["before"].value, batch["after"].value) == (7, 9)
    assert batch["before"].quality is batch["after"].quality is Quality.GOOD
    assert batch["text"].quality is Quality.BAD
    assert batch["text"].value is None
    assert "utf-8" in batch["text"].reason.lower()


async def test_coalescing_uses_the_planned_minimum_on_the_wire(
    model: Model, tcp_server: TcpServer
) -> None:
    """The server sees exactly the planned number of requests per cycle (fewest possible)."""
    model.unit(1)
    tags = {
        f"t{i}": {"table": "holding", "address": i * 3} for i in range(100)
    }  # spans 298 registers
    dev = tcp(tcp_server, tags=tags, interval_ms=200)
    planned = plan_device(dev).requests_per_cycle[200]
    assert planned == 3
    (link,) = build_links([dev])
    async with running([link]) as sink:
        await sink.wait_for(lambda: len(sink.batches) >= 2, 5, "two cycles")
    # Counted after the link stopped: complete cycles plus at most a partial one.
    cycles = len(sink.batches)
    assert planned * cycles <= model.count(1) < planned * (cycles + 1)
    assert all(r.count <= 125 for r in model.log)


async def test_illegal_address_is_isolated_and_plan_refined(
    model: Model, tcp_server: TcpServer
) -> None:
    """An illegal address is bisected out; only that tag reads bad and later cycles stay cheap."""
    unit = model.unit(1)
    unit.holding.update({i: i for i in range(16)})
    unit.illegal.add(5)
    tags = {f"t{i}": {"table": "holding", "address": i} for i in range(8)}
    dev = tcp(tcp_server, tags=tags)
    (link,) = build_links([dev])
    async with running([link]) as sink:
        await sink.wait_for(lambda: len(sink.batches) >= 3, 5, "three cycles")
        first = {r.tag: r for r in sink.batches[0]}
        assert first["t5"].quality is Quality.BAD
        assert first["t5"].reason == "illegal address"
        assert all(first[f"t{i}"].value == i for i in range(8) if i != 5)
        await sink.wait_for(lambda: len(sink.batches) >= 5, 5, "two more cycles")
    # Cycle 1: [0-7] fails, [0-3] ok, [4-7] fails, [4-5] fails, [4] ok, [5] fails, [6-7] ok = 7.
    # Later cycles read only the refined blocks [0-3], [4], [6-7] = 3 (plus a partial cycle).
    later = len(sink.batches) - 1
    assert 7 + 3 * later <= len(model.log) < 7 + 3 * (later + 1)
    assert [(r.start, r.count) for r in model.log[7:10]] == [(0, 4), (4, 1), (6, 2)]
    assert link.diagnostics()["m1"].errors.get("illegal_address", 0) >= 1
    assert not [e for e in sink.events if e.state is CommsState.DOWN]


async def test_busy_reply_marks_readings_bad_without_comms_loss(
    model: Model, tcp_server: TcpServer
) -> None:
    """A busy device gives bad readings with reason 'device busy' but no comms-lost event."""
    model.unit(1).exception = 6
    dev = tcp(tcp_server, tags={"a": {"table": "holding", "address": 0}})
    (link,) = build_links([dev])
    async with running([link]) as sink:
        await sink.wait_for(lambda: len(sink.readings) >= 2, 5, "readings")
    assert {r.reason for r in sink.readings} == {"device busy"}
    assert [e.state for e in sink.events] == [CommsState.UP]


async def test_silent_unit_goes_down_then_recovers(model: Model, tcp_server: TcpServer) -> None:
    """A unit that stops answering emits comms-lost and bad 'timeout' readings, then restored."""
    unit = model.unit(1)
    unit.holding[0] = 7
    dev = tcp(tcp_server, tags={"a": {"table": "holding", "address": 0}})
    (link,) = build_links([dev])
    async with running([link]) as sink:
        await sink.wait_for(lambda: bool(sink.good("m1", "a")), 5, "good reading")
        unit.silent = True
        await sink.wait_for(lambda: sink.states("m1")[-1:] == [CommsState.DOWN], 5, "comms lost")
        bad = [r for r in sink.readings if r.quality is Quality.BAD]
        assert bad
        assert bad[0].reason == "timeout"
        mark = len(sink.readings)
        unit.silent = False
        await sink.wait_for(lambda: sink.states("m1")[-1:] == [CommsState.UP], 10, "comms restored")
        await sink.wait_for(
            lambda: any(r.quality is Quality.GOOD for r in sink.readings[mark:]), 5, "good again"
        )
    assert sink.states("m1") == [CommsState.UP, CommsState.DOWN, CommsState.UP]
    diag = link.diagnostics()["m1"].as_dict()
    assert diag["errors"]["timeout"] >= 1
    assert diag["rtt_ms"]["max"] is not None


async def test_dead_unit_behind_gateway_is_backed_off(model: Model, tcp_server: TcpServer) -> None:
    """On a shared gateway a dead unit is polled rarely (backoff); its neighbour every cycle."""
    model.unit(1).holding[0] = 1
    model.unit(2).silent = True
    live = tcp(tcp_server, "live", 1, tags={"a": {"table": "holding", "address": 0}})
    dead = tcp(tcp_server, "dead", 2, tags={"a": {"table": "holding", "address": 0}})
    links = build_links([live, dead])
    assert len(links) == 1  # one connection per endpoint
    async with running(links) as sink:
        await sink.wait_for(lambda: len(sink.good("live", "a")) >= 15, 10, "15 live cycles")
    assert model.count(2) <= 4 < model.count(1)
    assert sink.states("dead") == [CommsState.DOWN]
    assert sink.states("live") == [CommsState.UP]


async def test_dead_device_does_not_slow_another(model: Model, tcp_server: TcpServer) -> None:
    """A live device keeps its 1 s grid while a device on another endpoint times out."""
    model.unit(1).holding[0] = 1
    dead_model = Model()
    dead_model.unit(1).silent = True
    dead_server = TcpServer(dead_model)
    await dead_server.start()
    try:
        live = tcp(
            tcp_server, "live", interval_ms=1000, tags={"a": {"table": "holding", "address": 0}}
        )
        dead = tcp(
            dead_server,
            "dead",
            interval_ms=1000,
            timeout_ms=900,
            retries=1,
            tags={"a": {"table": "holding", "address": 0}},
        )
        async with running(build_links([live, dead])) as sink:
            await sink.wait_for(lambda: len(sink.good("live", "a")) >= 4, 8, "4 live cycles")
        monos = [r.mono for r in sink.good("live", "a")]
        gaps = [b - a for a, b in itertools.pairwise(monos)]
        assert all(abs(g - 1.0) < 0.1 for g in gaps), gaps
        assert sink.states("dead") == [CommsState.DOWN]
    finally:
        await dead_server.stop()


async def test_tcp_link_passes_driver_contract(model: Model, tcp_server: TcpServer) -> None:
    """The Modbus TCP link connects, reads, survives the server vanishing and recovers."""
    model.unit(1).holding.update({0: 1, 1: 2})
    model.unit(2).holding.update({0: 3})
    devs = [
        tcp(
            tcp_server,
            "a",
            1,
            tags={"x": {"table": "holding", "address": 0}, "y": {"table": "holding", "address": 1}},
        ),
        tcp(tcp_server, "b", 2, tags={"z": {"table": "holding", "address": 0}}),
    ]
    (link,) = build_links(devs)
    sink = await check_link_contract(
        ContractCase(
            link=link,
            tags_by_device=link.tags_by_device,
            stop_peer=tcp_server.stop,
            start_peer=tcp_server.start,
        )
    )
    assert sink.good("b", "z")[-1].value == 3


async def test_connect_refused_raises_device_unavailable() -> None:
    """Connecting to a closed port raises DeviceUnavailable quickly instead of hanging."""
    from edge_agent.errors import DeviceUnavailable

    server = TcpServer(Model())
    await server.start()
    port = server.port
    await server.stop()
    link = ModbusLink(
        [
            make_device(
                protocol="modbus_tcp",
                endpoint=f"127.0.0.1:{port}",
                unit_id=1,
                addressing="zero",
                tags={"a": {"table": "holding", "address": 0}},
            )
        ]
    )
    start = time.monotonic()
    with pytest.raises(DeviceUnavailable):
        await asyncio.wait_for(link.connect(), 5)
    assert time.monotonic() - start < 2


@pytest.mark.soak
async def test_cadence_stays_on_grid_for_a_minute(model: Model, tcp_server: TcpServer) -> None:
    """Soak: 60 polls at 1 s stay within 50 ms of the grid with a dead neighbour on the gateway."""
    model.unit(1).holding[0] = 1
    model.unit(2).silent = True
    live = tcp(
        tcp_server, "live", 1, interval_ms=1000, tags={"a": {"table": "holding", "address": 0}}
    )
    dead = tcp(
        tcp_server,
        "dead",
        2,
        interval_ms=1000,
        timeout_ms=50,
        tags={"a": {"table": "holding", "address": 0}},
    )
    async with running(build_links([live, dead])) as sink:
        await sink.wait_for(lambda: len(sink.good("live", "a")) >= 60, 75, "60 live cycles")
    monos = [r.mono for r in sink.good("live", "a")]
    origin = monos[0]
    assert all(abs((m - origin) - round(m - origin)) < 0.05 for m in monos)
    assert link_skips(sink) == 0


def link_skips(sink: Any) -> int:
    """Live readings missing from the 1 s sequence (gaps of about 2 s or more)."""
    monos = [r.mono for r in sink.good("live", "a")]
    return sum(round(b - a) - 1 for a, b in itertools.pairwise(monos))


async def test_slow_device_skips_ticks_instead_of_bunching(
    model: Model, tcp_server: TcpServer
) -> None:
    """A 250 ms reply on a 100 ms grid never overlaps polls; missed ticks are counted, not run."""
    unit = model.unit(1)
    unit.holding[0] = 1
    unit.delay_s = 0.25
    dev = tcp(
        tcp_server, interval_ms=100, timeout_ms=1000, tags={"a": {"table": "holding", "address": 0}}
    )
    (link,) = build_links([dev])
    async with running([link]) as sink:
        await sink.wait_for(lambda: len(sink.good("m1", "a")) >= 5, 10, "five slow reads")
    starts = [r.t for r in model.log]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Never a new request while one is pending, and no burst of catch-up requests afterwards.
    assert all(0.24 <= g < 0.35 for g in gaps), gaps
    assert link.diagnostics()["m1"].skipped_cycles >= len(starts) - 1


async def test_isolated_tag_is_reprobed_and_recovers(model: Model, tcp_server: TcpServer) -> None:
    """A tag isolated for an illegal address reads good again after the device maps it."""
    unit = model.unit(1)
    unit.holding.update({0: 10, 1: 11, 2: 12})
    unit.illegal.add(1)
    tags = {f"t{i}": {"table": "holding", "address": i} for i in range(3)}
    dev = tcp(tcp_server, tags=tags, reprobe_ms=1000)
    (link,) = build_links([dev])
    async with running([link]) as sink:
        await sink.wait_for(
            lambda: any(r.tag == "t1" and r.reason == "illegal address" for r in sink.readings),
            5,
            "t1 isolated",
        )
        unit.illegal.clear()
        await sink.wait_for(lambda: bool(sink.good("m1", "t1")), 5, "t1 good after re-probe")
    assert sink.good("m1", "t1")[0].value == 11
    assert sink.good("m1", "t0")[-1].value == 10
