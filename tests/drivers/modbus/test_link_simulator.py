"""ModbusLink against the bundled simulator (``quirks``): word orders, a hole, an outage."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.modbus.link import build_links
from edge_agent.model import CommsState, Quality
from tests.drivers.modbus.conftest import make_device
from tests.drivers.modbus.helpers import running

pytestmark = pytest.mark.integration

MACHINE_TAGS: dict[str, dict[str, Any]] = {
    "good": {"table": "holding", "address": 10, "type": "uint32"},
    "total": {"table": "input", "address": 14, "type": "uint32"},
    "speed": {"table": "holding", "address": 20, "type": "float32"},
    "temperature": {"table": "holding", "address": 22, "type": "float64"},
    # The simulator's word-order quirk applies to numbers only: text stays first-char-high.
    "text": {
        "table": "holding",
        "address": 30,
        "type": "string",
        "length": 16,
        "word_order": "ABCD",
    },
    "good64": {"table": "holding", "address": 40, "type": "uint64"},
    "running": {"table": "coil", "address": 0},
    "powered": {"table": "holding", "address": 1, "type": "bit", "bit": 4},
}


WORD_ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")


def sim_data(unit_id: int, **over: Any) -> dict[str, Any]:
    """Device keys common to every transport, for one simulated machine."""
    data: dict[str, Any] = {
        "unit_id": unit_id,
        "addressing": "zero",
        "interval_ms": 200,
        "timeout_ms": 300,
        "tags": MACHINE_TAGS,
    }
    data.update(over)
    return data


def sim_device(port: int, name: str, unit_id: int, **over: Any) -> Any:
    tcp = {"protocol": "modbus_tcp", "endpoint": f"127.0.0.1:{port}"}
    return make_device(name, **{**tcp, **sim_data(unit_id, **over)})


async def test_word_order_variants_match_simulator_ground_truth(sim_factory: Any) -> None:
    """Each word-order machine decodes to the simulator's own snapshot when configured right."""
    host = await sim_factory("quirks")
    machines = {m.id: m for m in host.machines}
    devs = [sim_device(host.modbus_port, o, machines[o].unit_id, word_order=o) for o in WORD_ORDERS]
    await check_word_orders(devs, machines)


async def check_word_orders(devs: list[Any], machines: dict[str, Any]) -> None:
    """Poll the devices (one link) until every one has read; compare with the snapshots."""
    (link,) = build_links(devs)  # one endpoint or serial port: one link
    async with running([link]) as sink:
        await sink.wait_for(
            lambda: all(sink.good(d.name, "text") for d in devs), 15, "all four read"
        )
    for dev in devs:
        snap = machines[dev.name].snapshot()
        got = {
            r.tag: r.value
            for r in sink.readings
            if r.device == dev.name and r.quality is Quality.GOOD
        }
        assert got["good"] == snap.good
        assert got["good64"] == snap.good
        assert got["total"] == snap.total
        assert got["speed"] == pytest.approx(snap.speed, rel=1e-6)
        assert got["temperature"] == pytest.approx(snap.temperature)
        assert got["text"] == snap.status_text
        assert got["running"] is snap.running
        assert got["powered"] is True
        assert snap.good >= 70000  # above 16 bits, so a wrong word order could not pass


async def test_hole_in_map_is_isolated_and_outage_is_reported(sim_factory: Any) -> None:
    """A tag over the HOLE machine's register 13 reads 'illegal address'; an outage is DOWN, UP."""
    host = await sim_factory("quirks")
    machines = {m.id: m for m in host.machines}
    hole_tags = {
        "good": {"table": "holding", "address": 10, "type": "uint32"},
        "scrap": {"table": "holding", "address": 12, "type": "uint32"},
        "total": {"table": "holding", "address": 14, "type": "uint32"},
    }
    hole = sim_device(host.modbus_port, "hole", machines["HOLE"].unit_id, tags=hole_tags)
    abcd = sim_device(host.modbus_port, "abcd", machines["ABCD"].unit_id)
    (link,) = build_links([hole, abcd])
    async with running([link]) as sink:
        await sink.wait_for(lambda: bool(sink.good("hole", "total")), 10, "hole device read")
        scrap = [r for r in sink.readings if r.device == "hole" and r.tag == "scrap"]
        assert scrap[0].quality is Quality.BAD
        assert scrap[0].reason == "illegal address"
        assert sink.good("hole", "good")[0].value == machines["HOLE"].snapshot().good
        machines["ABCD"].set_outage(True)
        await sink.wait_for(lambda: sink.states("abcd")[-1:] == [CommsState.DOWN], 10, "abcd down")
        machines["ABCD"].set_outage(False)
        await sink.wait_for(
            lambda: sink.states("abcd")[-1:] == [CommsState.UP], 10, "abcd up again"
        )
    assert sink.states("abcd") == [CommsState.UP, CommsState.DOWN, CommsState.UP]
    assert sink.states("hole") == [CommsState.UP]


async def test_busy_replies_are_bad_readings_not_comms_loss(sim_factory: Any) -> None:
    """The BUSY machine's exception-6 replies give 'device busy' readings, no comms-lost event."""
    host = await sim_factory("quirks")
    machines = {m.id: m for m in host.machines}
    busy = sim_device(
        host.modbus_port,
        "busy",
        machines["BUSY"].unit_id,
        interval_ms=50,
        tags={"good": {"table": "holding", "address": 10, "type": "uint32"}},
    )
    (link,) = build_links([busy])
    async with running([link]) as sink:
        await sink.wait_for(
            lambda: (
                any(r.reason == "device busy" for r in sink.readings)
                and len(sink.good("busy", "good")) >= 3
            ),
            15,
            "busy and good readings",
        )
    assert sink.states("busy") == [CommsState.UP]
    assert link.diagnostics()["busy"].errors["device_busy"] >= 1


async def test_word_order_variants_over_rtu_match_simulator_ground_truth(
    sim_factory: Any, rtu_pty_pair: tuple[str, str]
) -> None:
    """Over RTU on a socat pty pair, four units on one bus decode to the simulator's snapshot."""
    server_path, client_path = rtu_pty_pair
    host = await sim_factory("quirks", modbus=False, rtu_port=server_path)
    machines = {m.id: m for m in host.machines}
    rtu = {"protocol": "modbus_rtu", "serial_port": client_path, "baudrate": 19200}
    devs = [
        make_device(o, **{**sim_data(machines[o].unit_id, word_order=o, interval_ms=300), **rtu})
        for o in WORD_ORDERS
    ]
    await check_word_orders(devs, machines)
