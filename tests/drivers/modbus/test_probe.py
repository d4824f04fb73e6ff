"""Probe tools: every interpretation with address shifts, per-tag probing, and the CLI."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.modbus.codec import DataType, WordOrder, encode
from drivers.modbus.config import ModbusTable, TcpTransport
from drivers.modbus.probe import RawRead, format_probe, interpret, probe_devices, read_raw
from edge_agent.cli import main
from tests.drivers.modbus.conftest import make_device
from tests.drivers.modbus.fakeserver import Model, TcpServer


def test_interpret_flags_the_matching_type_order_and_shift() -> None:
    """A CDAB float32 stored one address higher is found as float32 CDAB at shift +1."""
    words = (0, 0, *encode(1234.5, DataType.FLOAT32, WordOrder.CDAB), 0)
    raw = RawRead(table=ModbusTable.HOLDING, start=9, words=words, requested=10, count=2)
    found = [(i.dtype, i.order, i.shift) for i in interpret(raw, 1234.5) if i.matches]
    assert found == [(DataType.FLOAT32, WordOrder.CDAB, 1)]
    text = format_probe(raw, "tcp://x:1 unit 1", 1234.5)
    assert text.endswith("Matches for 1234.5: float32 CDAB at address 11 (requested +1)")
    assert "one higher" in text


def test_interpret_shows_every_type_and_order() -> None:
    """Four registers are shown as every 16/32/64-bit type in every distinct order."""
    raw = RawRead(table=ModbusTable.HOLDING, start=0, words=(1, 2, 3, 4, 5), requested=0, count=4)
    kinds = {(i.dtype, i.order) for i in interpret(raw) if i.shift == 0}
    assert (DataType.UINT16, WordOrder.BADC) in kinds
    assert (DataType.FLOAT64, WordOrder.DCBA) in kinds
    assert (DataType.UINT16, WordOrder.CDAB) not in kinds  # identical to ABCD for one register
    int16 = next(i for i in interpret(raw) if i.shift == 0 and i.dtype is DataType.INT16)
    assert int16.values == (1, 2, 3, 4)
    assert {i.shift for i in interpret(raw)} == {0, 1}  # no address -1 below zero


@pytest.mark.integration
async def test_read_raw_and_probe_devices_against_a_server() -> None:
    """Raw reads include neighbours; probe_devices reports ok, illegal address, decode, timeout."""
    model = Model()
    unit = model.unit(1)
    unit.holding.update({9: 7, 10: 0x449A, 11: 0x5000, 12: 8, 20: 0xFFFE})
    unit.illegal.add(30)
    server = TcpServer(model)
    await server.start()
    try:
        transport = TcpTransport(host="127.0.0.1", port=server.port)
        raw = await read_raw(transport, unit_id=1, table=ModbusTable.HOLDING, address=10, count=2)
        assert (raw.start, raw.words) == (9, (7, 0x449A, 0x5000, 8))
        common: dict[str, Any] = {
            "protocol": "modbus_tcp",
            "endpoint": f"127.0.0.1:{server.port}",
            "addressing": "zero",
            "timeout_ms": 200,
        }
        m1 = make_device(
            "m1",
            unit_id=1,
            tags={
                "speed": {"table": "holding", "address": 10, "type": "float32"},
                "bad": {"table": "holding", "address": 30},
                "text": {"table": "holding", "address": 20, "type": "string", "length": 2},
            },
            **common,
        )
        m2 = make_device("m2", unit_id=5, tags={"x": {"table": "holding", "address": 0}}, **common)
        results = await probe_devices([m1, m2])
    finally:
        await server.stop()
    assert [(r.device, r.tag, r.ok, r.value) for r in results][:1] == [
        ("m1", "speed", True, 1234.5)
    ]
    reasons = {(r.device, r.tag): r.reason for r in results}
    assert reasons[("m1", "bad")] == "illegal address"
    assert reasons[("m1", "text")].startswith("decode error")
    assert reasons[("m2", "x")] == "timeout"


@pytest.fixture
def threaded_server() -> Iterator[tuple[Model, int]]:
    """A fake Modbus TCP server running in its own thread and loop (for sync CLI tests)."""
    model = Model()
    loop = asyncio.new_event_loop()
    server = TcpServer(model)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield model, server.port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@pytest.mark.integration
def test_cli_probe_modbus_marks_expected_value(
    threaded_server: tuple[Model, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """``edge-agent probe modbus --expect`` prints raw registers and flags the match; exit 0."""
    model, port = threaded_server
    model.unit(1).holding.update(dict(enumerate(encode(1234.5, DataType.FLOAT32), start=10)))
    argv = ["probe", "modbus", "--endpoint", f"127.0.0.1:{port}", "--unit", "1"]
    code = main(
        [*argv, "--table", "holding", "--address", "10", "--count", "2", "--expect", "1234.5"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "0x449A" in out
    assert "Matches for 1234.5: float32 ABCD at address 10\n" in out
    assert main([*argv, "--address", "10", "--count", "2", "--expect", "99"]) == 1


def test_cli_probe_unreachable_endpoint_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable endpoint gives exit code 1 and a one-line error, not a traceback."""
    code = main(
        ["probe", "modbus", "--endpoint", "127.0.0.1:1", "--address", "0", "--timeout-ms", "200"]
    )
    assert code == 1
    assert capsys.readouterr().err.startswith("error: cannot connect to tcp://127.0.0.1:1")


@pytest.mark.integration
async def test_probe_devices_reports_connect_failure_per_tag() -> None:
    """A device whose endpoint refuses connections gets 'connect failed' for every tag."""
    server = TcpServer(Model())
    await server.start()
    port = server.port
    await server.stop()
    dev = make_device(
        "gone",
        protocol="modbus_tcp",
        endpoint=f"127.0.0.1:{port}",
        unit_id=1,
        addressing="zero",
        tags={"a": {"table": "holding", "address": 0}, "b": {"table": "coil", "address": 0}},
    )
    results = await probe_devices([dev])
    assert [(r.tag, r.ok) for r in results] == [("a", False), ("b", False)]
    assert all(r.reason.startswith("connect failed: cannot connect to tcp://") for r in results)
