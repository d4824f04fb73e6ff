"""Misbehaving Modbus servers over real loopback TCP and a pty: bad answers are never good data.

Each malformed answer the acceptance harness sent (an FC 4 answer to an FC 3
read, one register short or too many, a byte count that lies, trailing bytes in
or after the frame, another unit id, random bytes, a bad CRC) must give bad
readings with the reason, be counted in the device's diagnostics, make the link
reopen its connection, and be logged once per device and condition, never with
an ERROR or a traceback; the device reads good values again once it behaves.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from drivers.modbus.link import build_links
from edge_agent.model import CommsState, Quality
from tests.drivers.modbus.conftest import make_device
from tests.drivers.modbus.fakeserver import Model, RtuServer, TcpServer
from tests.drivers.modbus.helpers import running

pytestmark = pytest.mark.integration

TAGS = {
    "a": {"table": "holding", "address": 0},
    "b": {"table": "holding", "address": 1},
    "c": {"table": "holding", "address": 2},
}

CASES = {
    "wrong_function": "function code 4 in the answer to a function code 3 request",
    "short_register": "byte count 4 for 3 registers (expected 6)",
    "extra_register": "byte count 8 for 3 registers (expected 6)",
    "byte_count_lies": "byte count 6 but 4 data bytes in the frame",
    "trailing_in_frame": "2 bytes after the response data",
    "trailing_after": "3 bytes after the response frame",
    "wrong_unit": "unit id 2 in the answer to a request for unit 1",
    "random": "protocol id",
}


def tcp(server: TcpServer, name: str = "m1", unit_id: int = 1) -> Any:
    return make_device(
        name,
        protocol="modbus_tcp",
        endpoint=f"127.0.0.1:{server.port}",
        unit_id=unit_id,
        addressing="zero",
        interval_ms=100,
        timeout_ms=300,
        tags=TAGS,
    )


def quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing at ERROR, no traceback anywhere at WARNING or above."""
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not loud, [r.getMessage() for r in loud]
    traced = [r for r in caplog.records if r.levelno >= logging.WARNING and r.exc_info]
    assert not traced, [r.getMessage() for r in traced]


@pytest.mark.parametrize("garble", sorted(CASES))
async def test_malformed_answer_reads_bad_is_counted_and_resynchronised(
    model: Model, tcp_server: TcpServer, garble: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Bad readings with the reason, counted, a fresh connection; good again once fixed."""
    unit = model.unit(1)
    unit.holding.update({0: 10, 1: 11, 2: 12})
    unit.garble = garble
    (link,) = build_links([tcp(tcp_server)])
    caplog.set_level(logging.INFO)
    async with running([link]) as sink:
        await sink.wait_for(lambda: len(sink.batches) >= 2, 5, "two bad cycles")
        bad = [r for b in sink.batches for r in b]
        assert bad
        assert all(r.quality is Quality.BAD for r in bad)
        assert all(r.reason.startswith("invalid response: ") for r in bad)
        assert CASES[garble] in bad[0].reason
        assert link.diagnostics()["m1"].errors.get("invalid_response", 0) >= 2
        assert tcp_server.connections >= 2  # the connection was dropped and reopened
        unit.garble = None
        await sink.wait_for(lambda: bool(sink.good("m1", "c")), 5, "good values again")
    assert [r.value for r in sink.readings if r.quality is Quality.GOOD][:3] == [10, 11, 12]
    warnings = [r.getMessage() for r in caplog.records if "invalid responses" in r.getMessage()]
    assert len(warnings) == 1  # once per device and condition
    assert any("answers validly again" in r.getMessage() for r in caplog.records)
    quiet(caplog)


async def test_a_garbling_unit_does_not_spoil_its_neighbour_on_the_gateway(
    model: Model, tcp_server: TcpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Unit 2 answers garbage behind the same TCP gateway; unit 1 keeps reading good values."""
    model.unit(1).holding.update({0: 1, 1: 2, 2: 3})
    model.unit(2).garble = "wrong_function"
    links = build_links([tcp(tcp_server, "ok", 1), tcp(tcp_server, "noisy", 2)])
    async with running(links) as sink:
        await sink.wait_for(lambda: len(sink.good("ok", "a")) >= 5, 10, "five good cycles")
    noisy = [r for r in sink.readings if r.device == "noisy"]
    assert noisy
    assert all(r.quality is Quality.BAD for r in noisy)
    assert sink.states("ok") == [CommsState.UP]  # never reported lost
    quiet(caplog)


@pytest.mark.needs_socat
@pytest.mark.parametrize(
    ("garble", "reason"),
    [
        ("bad_crc", "CRC does not match"),
        ("wrong_function", "function code 4 in the answer"),
        ("trailing_after", "bytes after the response frame"),
    ],
)
async def test_malformed_rtu_answer_reads_bad(
    pty_pair: tuple[str, str], garble: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Over RTU a bad CRC, a wrong function code or trailing bytes read bad with the reason."""
    server_end, client_end = pty_pair
    model = Model()
    model.unit(1).holding.update({0: 1, 1: 2, 2: 3})
    model.unit(1).garble = garble
    server = RtuServer(model, server_end)
    await server.start()
    dev = make_device(
        "r1",
        protocol="modbus_rtu",
        serial_port=client_end,
        baudrate=115200,
        parity="N",
        unit_id=1,
        addressing="zero",
        interval_ms=200,
        timeout_ms=300,
        tags=TAGS,
    )
    try:
        (link,) = build_links([dev])
        async with running([link]) as sink:
            await sink.wait_for(lambda: bool(sink.readings), 10, "a cycle")
            model.unit(1).garble = None
            await sink.wait_for(lambda: bool(sink.good("r1", "c")), 10, "good values again")
    finally:
        await server.stop()
    first = sink.batches[0]
    assert all(r.quality is Quality.BAD for r in first)
    assert reason in first[0].reason
    quiet(caplog)
