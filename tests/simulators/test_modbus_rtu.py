"""The Modbus RTU front end over a socat pty pair, read by pymodbus's serial client."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from simulators.host import SimulatorHost
from simulators.modbus_pdu import crc16
from simulators.modbus_rtu import frame_gap_s, rtu_frame
from simulators.scenario import OutageMode

pytestmark = [pytest.mark.integration, pytest.mark.needs_socat]

SimFactory = Callable[..., Awaitable[SimulatorHost]]


def test_crc16_reference_vector() -> None:
    """CRC-16/MODBUS of the classic example frame 01 03 00 00 00 0A is 0xCDC5 (sent C5 CD)."""
    assert crc16(bytes.fromhex("01030000000A")) == 0xCDC5
    assert rtu_frame(1, bytes.fromhex("030000000A"))[-2:] == bytes.fromhex("C5CD")


def test_frame_gap() -> None:
    """t3.5 is 3.5 character times at 9600 baud and fixed (2 ms floor) above 19200."""
    assert frame_gap_s(9600) == pytest.approx(3.5 * 11 / 9600)
    assert frame_gap_s(115200) == 0.002


@pytest.fixture
async def rtu_sim(
    sim_factory: SimFactory, rtu_pty_pair: tuple[str, str]
) -> AsyncIterator[tuple[SimulatorHost, AsyncModbusSerialClient]]:
    """The quirks scenario on RTU (server end of the pty pair) plus a connected client."""
    server_path, client_path = rtu_pty_pair
    sim = await sim_factory("quirks", modbus=False, rtu_port=server_path)
    client = AsyncModbusSerialClient(
        client_path, framer=FramerType.RTU, baudrate=19200, timeout=0.5, retries=0
    )
    assert await client.connect()
    yield sim, client
    client.close()


async def test_rtu_reads_and_writes(rtu_sim: tuple[SimulatorHost, AsyncModbusSerialClient]) -> None:
    """Holding registers, coils and a scratch write work over RTU like over TCP."""
    sim, client = rtu_sim
    await sim.advance(3.5)
    rr = await client.read_holding_registers(0, count=19, device_id=2)
    assert not rr.isError()
    assert rr.registers[0] == 1
    assert rr.registers[16] == (70003 & 0xFFFF)
    assert rr.registers[10:12] == [70003 & 0xFFFF, 70003 >> 16]  # CDAB
    coils = await client.read_coils(0, count=2, device_id=2)
    assert coils.bits[:2] == [True, False]
    assert not (await client.write_register(7, 1234, device_id=2)).isError()
    assert (await client.read_holding_registers(7, count=1, device_id=2)).registers == [1234]


async def test_rtu_exceptions_and_silence(
    rtu_sim: tuple[SimulatorHost, AsyncModbusSerialClient],
) -> None:
    """A hole gives exception 2; an unknown unit and a silent machine give no reply."""
    sim, client = rtu_sim
    rr = await client.read_holding_registers(12, count=2, device_id=5)
    assert rr.isError()
    assert rr.exception_code == 2
    with pytest.raises(ModbusIOException):
        await client.read_holding_registers(0, count=1, device_id=42)
    sim.machine("ABCD").set_outage(True, OutageMode.SILENT)
    with pytest.raises(ModbusIOException):
        await client.read_holding_registers(0, count=1, device_id=1)
    sim.machine("ABCD").set_outage(False)
    assert not (await client.read_holding_registers(0, count=1, device_id=1)).isError()


async def test_rtu_bad_crc_is_ignored(
    sim_factory: SimFactory, rtu_pty_pair: tuple[str, str]
) -> None:
    """A frame with a corrupted CRC is dropped silently and counted; the next one is answered."""
    server_path, client_path = rtu_pty_pair
    sim = await sim_factory("steady", modbus=False, rtu_port=server_path)
    assert sim.rtu is not None
    client = AsyncModbusSerialClient(
        client_path, framer=FramerType.RTU, baudrate=19200, timeout=0.5, retries=0
    )
    assert await client.connect()
    try:
        fd = os.open(client_path, os.O_RDWR | os.O_NOCTTY)
        try:
            bad = bytearray(rtu_frame(1, bytes.fromhex("0300000001")))
            bad[-1] ^= 0xFF
            os.write(fd, bytes(bad))
        finally:
            os.close(fd)
        # Let the line go quiet for well over t3.5, so the next request is a separate frame.
        await asyncio.sleep(0.05)
        rr = await client.read_holding_registers(0, count=1, device_id=1)
        assert rr.registers == [1]
        assert sim.rtu.crc_errors == 1
    finally:
        client.close()


async def test_mbpoll_reads_over_rtu(
    sim_factory: SimFactory, rtu_pty_pair: tuple[str, str]
) -> None:
    """The third-party mbpoll tool reads holding registers over RTU on the pty pair."""
    mbpoll = shutil.which("mbpoll")
    if mbpoll is None:
        pytest.skip("mbpoll is not installed (apt-get install mbpoll)")
    server_path, client_path = rtu_pty_pair
    sim = await sim_factory("demo", modbus=False, rtu_port=server_path)
    sim.machine("M2").force_fault(23, 60.0)
    args = ["-m", "rtu", "-b", "19200", "-P", "none", "-a", "2", "-t", "4", "-r", "0", "-c", "4"]
    proc = await asyncio.create_subprocess_exec(
        mbpoll,
        *args,
        "-0",
        "-1",
        client_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, err.decode()
    values = {}
    for line in out.decode().splitlines():
        if line.startswith("["):
            addr, value = line[1:].split("]:")
            values[int(addr)] = int(value.split()[0])  # "32768 (-32768)" for high values
    assert values == {0: 3, 1: 0b10010, 2: 23, 3: 1 << 15}  # down, fault bit + powered, code 23


async def test_rtu_slow_device(rtu_sim: tuple[SimulatorHost, AsyncModbusSerialClient]) -> None:
    """Over RTU the SLOW machine's reply also comes after its 300 ms delay."""
    _sim, client = rtu_sim
    t0 = time.monotonic()
    rr = await client.read_holding_registers(0, count=1, device_id=6)
    assert not rr.isError()
    assert 0.28 <= time.monotonic() - t0 < 0.5
