"""ModbusLink over RTU on a socat pty pair: every type and order, several unit ids on one bus."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.modbus.link import build_links
from edge_agent.model import CommsState, Quality
from tests.drivers.modbus.conftest import make_device
from tests.drivers.modbus.fakeserver import Model, RtuServer
from tests.drivers.modbus.helpers import running, typed_tags

pytestmark = [pytest.mark.integration, pytest.mark.needs_socat]


def rtu(port: str, name: str, unit_id: int, **over: Any) -> Any:
    data: dict[str, Any] = {
        "protocol": "modbus_rtu",
        "serial_port": port,
        "baudrate": 115200,
        # Linux pseudo-terminals refuse parity changes (termios EINVAL); real ports accept "E".
        "parity": "N",
        "unit_id": unit_id,
        "addressing": "one",
        "interval_ms": 200,
        "timeout_ms": 300,
    }
    data.update(over)
    return make_device(name, **data)


async def test_every_type_and_order_over_rtu(pty_pair: tuple[str, str]) -> None:
    """All types and orders decode over RTU, and two unit ids share one serialised bus."""
    server_end, client_end = pty_pair
    model = Model()
    holding: dict[int, int] = {}
    tags, expected = typed_tags(holding)
    # addressing = "one": config address N is wire address N - 1.
    tags = {n: {**t, "address": t["address"] + 1} for n, t in tags.items()}
    model.unit(1).holding.update(holding)
    model.unit(2).input[0] = 99
    server = RtuServer(model, server_end)
    await server.start()
    try:
        devs = [
            rtu(client_end, "a", 1, tags=tags),
            rtu(client_end, "b", 2, tags={"v": {"table": "input", "address": 1}}),
        ]
        links = build_links(devs)
        assert len(links) == 1  # one owner per serial port
        async with running(links) as sink:
            await sink.wait_for(
                lambda: bool(sink.good("a", "text")) and bool(sink.good("b", "v")),
                10,
                "both units read",
            )
    finally:
        await server.stop()
    batch = next(b for b in sink.batches if b and b[0].device == "a")
    assert all(r.quality is Quality.GOOD for r in batch)
    assert {r.tag: r.value for r in batch} == pytest.approx(expected)
    assert sink.good("b", "v")[0].value == 99
    assert sink.states("a") == [CommsState.UP]
    assert sink.states("b") == [CommsState.UP]


async def test_silent_rtu_unit_goes_down_without_stalling_its_neighbour(
    pty_pair: tuple[str, str],
) -> None:
    """A silent unit on the bus emits comms-lost while the other unit keeps reading good values."""
    server_end, client_end = pty_pair
    model = Model()
    model.unit(1).holding[0] = 5
    model.unit(2).silent = True
    server = RtuServer(model, server_end)
    await server.start()
    try:
        devs = [
            rtu(client_end, "live", 1, tags={"x": {"table": "holding", "address": 1}}),
            rtu(client_end, "dead", 2, tags={"x": {"table": "holding", "address": 1}}),
        ]
        async with running(build_links(devs)) as sink:
            await sink.wait_for(lambda: len(sink.good("live", "x")) >= 8, 10, "8 live reads")
    finally:
        await server.stop()
    assert sink.states("dead") == [CommsState.DOWN]
    assert [r.reason for r in sink.readings if r.device == "dead"][:1] == ["timeout"]
    assert model.count(2) < model.count(1)


async def test_port_refusing_line_settings_is_device_unavailable(pty_pair: tuple[str, str]) -> None:
    """A port refusing the line settings (parity on a pty) raises DeviceUnavailable, no crash."""
    from drivers.modbus.link import ModbusLink
    from edge_agent.errors import DeviceUnavailable

    dev = rtu(pty_pair[1], "p", 1, parity="E", tags={"x": {"table": "holding", "address": 1}})
    link = ModbusLink([dev])
    with pytest.raises(DeviceUnavailable, match="cannot open rtu://"):
        await link.connect()
    await link.close()


async def test_missing_serial_port_is_device_unavailable() -> None:
    """A serial port that does not exist raises DeviceUnavailable (retried by run_link)."""
    from drivers.modbus.link import ModbusLink
    from edge_agent.errors import DeviceUnavailable

    dev = rtu("/dev/edge-agent-no-such-tty", "p", 1, tags={"x": {"table": "holding", "address": 1}})
    with pytest.raises(DeviceUnavailable):
        await ModbusLink([dev]).connect()


async def test_inter_frame_delay_is_kept_between_requests(pty_pair: tuple[str, str]) -> None:
    """On RTU the next request is sent only after the configured silence since the last reply."""
    server_end, client_end = pty_pair
    model = Model()
    for unit_id in (1, 2):
        model.unit(unit_id).holding.update({0: 1, 10: 2})
    server = RtuServer(model, server_end)
    await server.start()
    try:
        tags = {
            "a": {"table": "holding", "address": 1},
            "b": {"table": "holding", "address": 11},
        }
        devs = [
            rtu(client_end, f"d{u}", u, max_gap=0, inter_frame_delay_ms=30.0, tags=tags)
            for u in (1, 2)
        ]
        async with running(build_links(devs)) as sink:
            await sink.wait_for(lambda: len(model.log) >= 8, 10, "eight requests")
    finally:
        await server.stop()
    # Request i+1 arrives after reply i was written, at least the inter-frame delay later.
    gaps = [req.t - reply for req, reply in zip(model.log[1:], server.reply_times, strict=False)]
    assert len(gaps) >= 6
    assert min(gaps) >= 0.028, gaps
    assert len(sink.good("d1", "a")) >= 1
