"""The Modbus TCP front end, read by third-party clients (pymodbus, mbpoll) over loopback."""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from simulators.host import SimulatorHost
from simulators.scenario import OutageMode

pytestmark = pytest.mark.integration

SimFactory = Callable[..., Awaitable[SimulatorHost]]


@pytest.fixture
async def quirks(sim_factory: SimFactory) -> SimulatorHost:
    """The quirks scenario on Modbus TCP with a manual clock."""
    return await sim_factory("quirks")


@pytest.fixture
async def client(quirks: SimulatorHost) -> AsyncIterator[AsyncModbusTcpClient]:
    """A pymodbus client on the quirks simulator (short timeout, no retries)."""
    c = AsyncModbusTcpClient("127.0.0.1", port=quirks.modbus_port, timeout=0.5, retries=0)
    assert await c.connect()
    yield c
    c.close()


async def test_holding_registers_show_the_model(
    quirks: SimulatorHost, client: AsyncModbusTcpClient
) -> None:
    """State, run bit, counters and status text read over TCP match the model."""
    await quirks.advance(10.5)
    rr = await client.read_holding_registers(0, count=44, device_id=1)
    assert not rr.isError()
    regs = rr.registers
    snap = quirks.machine("ABCD").snapshot()
    assert regs[0] == 1
    assert regs[4] == 1
    assert regs[2] == 0
    assert (regs[10] << 16 | regs[11]) == snap.good == 70010
    text = b"".join(struct.pack(">H", r) for r in regs[30:38]).rstrip(b"\0")
    assert text == b"RUNNING"
    coils = await client.read_coils(0, count=3, device_id=1)
    assert coils.bits[:3] == [True, False, True]
    ir = await client.read_input_registers(10, count=2, device_id=1)
    assert ir.registers == regs[10:12]


@pytest.mark.parametrize(
    ("unit", "word_order", "byteswap"),
    [(1, "big", False), (2, "little", False), (3, "big", True), (4, "little", True)],
)
async def test_word_orders_over_the_wire(
    quirks: SimulatorHost,
    client: AsyncModbusTcpClient,
    unit: int,
    word_order: str,
    byteswap: bool,
) -> None:
    """ABCD/CDAB/BADC/DCBA machines decode to the same counter and temperature."""
    await quirks.advance(5.5)
    rr = await client.read_holding_registers(10, count=16, device_id=unit)
    regs = rr.registers
    if byteswap:
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    c = AsyncModbusTcpClient
    good = c.convert_from_registers(regs[0:2], c.DATATYPE.UINT32, word_order=word_order)
    temp = c.convert_from_registers(regs[12:16], c.DATATYPE.FLOAT64, word_order=word_order)
    assert good == 70005
    snap = next(m for m in quirks.machines if m.unit_id == unit).snapshot()
    assert temp == pytest.approx(snap.temperature)


async def test_hole_gives_illegal_address(
    quirks: SimulatorHost, client: AsyncModbusTcpClient
) -> None:
    """A block read touching an unmapped register fails with exception 2; around it works."""
    rr = await client.read_holding_registers(10, count=6, device_id=5)
    assert rr.isError()
    assert rr.exception_code == 2
    assert not (await client.read_holding_registers(10, count=3, device_id=5)).isError()
    assert not (await client.read_holding_registers(14, count=2, device_id=5)).isError()


async def test_past_end_unknown_unit_and_read_only(client: AsyncModbusTcpClient) -> None:
    """Past the map -> exc 2; unknown unit -> exc 0x0B; write to read-only -> exc 2."""
    rr = await client.read_holding_registers(40, count=5, device_id=1)
    assert rr.isError()
    assert rr.exception_code == 2
    rr = await client.read_holding_registers(0, count=1, device_id=99)
    assert rr.isError()
    assert rr.exception_code == 0x0B
    wr = await client.write_register(10, 1, device_id=1)
    assert wr.isError()
    assert wr.exception_code == 2
    wr = await client.write_registers(6, [7, 8], device_id=1)
    assert not wr.isError()
    assert (await client.read_holding_registers(6, count=2, device_id=1)).registers == [7, 8]
    wc = await client.write_coil(9, True, device_id=1)
    assert not wc.isError()
    assert (await client.read_coils(8, count=2, device_id=1)).bits[:2] == [False, True]


async def test_slow_device_delays_replies(client: AsyncModbusTcpClient) -> None:
    """The SLOW machine answers after about its configured 300 ms; others immediately."""
    t0 = time.monotonic()
    assert not (await client.read_holding_registers(0, count=1, device_id=6)).isError()
    slow = time.monotonic() - t0
    t0 = time.monotonic()
    assert not (await client.read_holding_registers(0, count=1, device_id=1)).isError()
    fast = time.monotonic() - t0
    assert 0.28 <= slow < 0.5
    assert fast < 0.1


async def test_silent_outage_times_out_other_units_answer(
    quirks: SimulatorHost, client: AsyncModbusTcpClient
) -> None:
    """A silent machine does not reply (timeout) while other unit ids still answer."""
    quirks.machine("ABCD").set_outage(True, OutageMode.SILENT)
    with pytest.raises(ModbusIOException):
        await client.read_holding_registers(0, count=1, device_id=1)
    assert not (await client.read_holding_registers(0, count=1, device_id=2)).isError()
    quirks.machine("ABCD").set_outage(False)
    assert not (await client.read_holding_registers(0, count=1, device_id=1)).isError()


async def test_close_outage_drops_connection(quirks: SimulatorHost) -> None:
    """A machine in 'close' outage closes the TCP connection on the next request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", quirks.modbus_port)
    try:
        quirks.machine("ABCD").set_outage(True, OutageMode.CLOSE)
        writer.write(bytes.fromhex("0001 0000 0006 01 03 0000 0001".replace(" ", "")))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(100), timeout=2.0)
        assert data == b""  # EOF: the simulator closed the connection
    finally:
        writer.close()


async def test_scripted_restart_and_close_outage(
    quirks: SimulatorHost, client: AsyncModbusTcpClient
) -> None:
    """FLAKY: silent while restarting at 60 s (counters reset), closes connections at 120 s."""
    await quirks.advance(59.5)
    before = (await client.read_holding_registers(16, count=1, device_id=7)).registers[0]
    assert before == 59
    await quirks.advance(1.0)
    with pytest.raises(ModbusIOException):
        await client.read_holding_registers(16, count=1, device_id=7)
    await quirks.advance(5.0)
    rr = await client.read_holding_registers(0, count=17, device_id=7)
    assert rr.registers[5] == 1
    assert rr.registers[16] == 6
    await quirks.advance(55.0)
    with pytest.raises((ConnectionException, ModbusIOException)):
        await client.read_holding_registers(16, count=1, device_id=7)


async def test_rollover_16_and_32_bit(sim_factory: SimFactory) -> None:
    """The rollover scenario's counters wrap over the wire: 16-bit past 65535, 32-bit past 2^32."""
    sim = await sim_factory("rollover")
    c = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus_port, timeout=0.5, retries=0)
    assert await c.connect()
    try:
        await sim.advance(10.25)  # 20 parts at 0.5 s
        r16 = (await c.read_holding_registers(16, count=1, device_id=1)).registers[0]
        assert r16 == 65520
        await sim.advance(20.0)  # 60 parts: 65560 -> wrapped
        r16 = (await c.read_holding_registers(16, count=1, device_id=1)).registers[0]
        assert r16 == (65500 + 60) % 65536
        regs = (await c.read_holding_registers(10, count=2, device_id=2)).registers
        good = AsyncModbusTcpClient.convert_from_registers(
            regs, AsyncModbusTcpClient.DATATYPE.UINT32, word_order="little"
        )
        assert good == (2**32 - 50 + 60) % 2**32 == 10
    finally:
        c.close()


async def test_mbpoll_reads_holding_registers(simulator: SimulatorHost) -> None:
    """The third-party mbpoll tool reads the steady machine's holding registers."""
    mbpoll = shutil.which("mbpoll")
    if mbpoll is None:
        pytest.skip("mbpoll is not installed (apt-get install mbpoll)")
    await simulator.advance(21.0)
    proc = await asyncio.create_subprocess_exec(
        mbpoll,
        "-m",
        "tcp",
        "-p",
        str(simulator.modbus_port),
        "-a",
        "1",
        "-t",
        "4",
        "-r",
        "0",
        "-c",
        "5",
        "-1",
        "-0",
        "127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    # With -0 references are PDU addresses; mbpoll prints "[address]: value" lines.
    values: dict[int, int] = {}
    for line in text.splitlines():
        if line.startswith("["):
            addr, value = line[1:].split("]:")
            values[int(addr)] = int(value)
    assert values == {0: 1, 1: 0b10001, 2: 0, 3: 0, 4: 1}  # running, status word, no fault


async def test_busy_device_sometimes_answers_exception_6(client: AsyncModbusTcpClient) -> None:
    """The BUSY machine answers some requests with exception 6 and the rest normally."""
    codes = []
    for _ in range(40):
        rr = await client.read_holding_registers(0, count=1, device_id=8)
        codes.append(rr.exception_code if rr.isError() else 0)
    assert set(codes) == {0, 6}
    assert 3 <= codes.count(6) <= 20  # busy_rate = 0.25


async def test_the_connection_log_records_each_connection_in_order(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Each client connection is logged with its open and close times and requests served."""
    log_path = tmp_path / "connections.jsonl"
    sim = await sim_factory("steady", connection_log=log_path)
    for reads in (2, 3):
        c = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus_port, timeout=0.5, retries=0)
        assert await c.connect()
        for _ in range(reads):
            assert not (await c.read_coils(0, count=1, device_id=1)).isError()
        c.close()
        assert sim.modbus is not None
        deadline = time.monotonic() + 5
        while sim.modbus.connections[-1].closed is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
    first, second = sim.modbus.connections
    assert (first.requests, second.requests) == (2, 3)
    assert first.opened <= first.closed <= second.opened <= second.closed  # type: ignore[operator]
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(x["event"], x["id"]) for x in lines] == [
        ("open", 1),
        ("close", 1),
        ("open", 2),
        ("close", 2),
    ]
    assert lines[1]["requests"] == 2
