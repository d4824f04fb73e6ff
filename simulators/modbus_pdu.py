"""Modbus application layer (PDU) shared by the TCP and RTU front ends.

Implements function codes 1, 2, 3, 4 (reads), 5, 6, 15, 16 (writes) over a
:class:`~simulators.device.MachineDevice`, plus CRC-16/MODBUS for RTU.
Exceptions follow the spec: 1 illegal function, 2 illegal data address
(unmapped address, a ``holes`` entry inside the block, past the end of the
map, or a write to a read-only address), 3 illegal data value (bad count or
malformed request), 6 server device busy (quirk ``busy_rate``). It does not
do framing, timing or comms faults; the front ends own those.
"""

from __future__ import annotations

import struct

from simulators.device import MachineDevice
from simulators.registers import COIL_COUNT, REGISTER_COUNT

ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
DEVICE_BUSY = 6
GATEWAY_NO_RESPONSE = 0x0B

MAX_REGISTERS = 125
MAX_BITS = 2000


def exception_pdu(fc: int, code: int) -> bytes:
    """An exception response PDU."""
    return bytes((fc | 0x80, code))


def _pack_bits(bits: list[bool]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def handle_pdu(dev: MachineDevice, pdu: bytes) -> bytes:
    """Answer one request PDU with a response or exception PDU."""
    if not pdu:
        return exception_pdu(0, ILLEGAL_FUNCTION)
    fc = pdu[0]
    if fc not in (1, 2, 3, 4, 5, 6, 15, 16):
        return exception_pdu(fc, ILLEGAL_FUNCTION)
    if len(pdu) < 5:
        return exception_pdu(fc, ILLEGAL_VALUE)
    if dev.busy():
        return exception_pdu(fc, DEVICE_BUSY)
    address, arg = struct.unpack_from(">HH", pdu, 1)
    if fc in (1, 2):
        if not 1 <= arg <= MAX_BITS:
            return exception_pdu(fc, ILLEGAL_VALUE)
        if address + arg > COIL_COUNT:
            return exception_pdu(fc, ILLEGAL_ADDRESS)
        data = _pack_bits(dev.bits()[address : address + arg])
        return bytes((fc, len(data))) + data
    if fc in (3, 4):
        if not 1 <= arg <= MAX_REGISTERS:
            return exception_pdu(fc, ILLEGAL_VALUE)
        end = address + arg
        if end > REGISTER_COUNT or any(address <= h < end for h in dev.holes):
            return exception_pdu(fc, ILLEGAL_ADDRESS)
        regs = dev.registers()[address:end]
        return bytes((fc, 2 * arg)) + struct.pack(f">{arg}H", *regs)
    if fc == 5:
        if arg not in (0x0000, 0xFF00):
            return exception_pdu(fc, ILLEGAL_VALUE)
        if not dev.write_coils(address, [arg == 0xFF00]):
            return exception_pdu(fc, ILLEGAL_ADDRESS)
        return pdu[:5]
    if fc == 6:
        if address in dev.holes or not dev.write_registers(address, [arg]):
            return exception_pdu(fc, ILLEGAL_ADDRESS)
        return pdu[:5]
    # 15 and 16: address, quantity, byte count, values.
    if len(pdu) < 6:
        return exception_pdu(fc, ILLEGAL_VALUE)
    nbytes = pdu[5]
    payload = pdu[6:]
    if fc == 15:
        if not 1 <= arg <= 0x7B0 or nbytes != (arg + 7) // 8 or len(payload) != nbytes:
            return exception_pdu(fc, ILLEGAL_VALUE)
        bits = [bool(payload[i // 8] >> (i % 8) & 1) for i in range(arg)]
        if not dev.write_coils(address, bits):
            return exception_pdu(fc, ILLEGAL_ADDRESS)
        return pdu[:5]
    if not 1 <= arg <= 123 or nbytes != 2 * arg or len(payload) != nbytes:
        return exception_pdu(fc, ILLEGAL_VALUE)
    values = list(struct.unpack(f">{arg}H", payload))
    if any(address <= h < address + arg for h in dev.holes) or not dev.write_registers(
        address, values
    ):
        return exception_pdu(fc, ILLEGAL_ADDRESS)
    return pdu[:5]


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc
