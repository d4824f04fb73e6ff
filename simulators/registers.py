"""The Modbus register map and the encoding of a machine snapshot into it.

One fixed map per machine (one unit id each), zero-based PDU addresses. The
holding and input register tables carry the same image; coils and discrete
inputs carry the same bits. Quirks change the *encoding*, never the layout:
``word_order`` applies to every 32/64-bit value, counters wrap at their width,
addresses listed in ``holes`` are unmapped (reads that touch them get Modbus
exception 2, illegal data address), and anything past the end of the map is
unmapped too. Holding registers 6..9 and coils 8..15 are a writable scratch
area (a real PLC's setpoints); every other address is read-only (exception 2
on write). This module is pure: no I/O, no clock.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from simulators.model import Snapshot
from simulators.scenario import MachineSpec, WordOrder

STATUS_TEXT_CHARS = 16
REGISTER_COUNT = 44
COIL_COUNT = 16
WRITABLE_REGISTERS = range(6, 10)
WRITABLE_COILS = range(8, 16)


@dataclass(frozen=True, slots=True)
class Field:
    """One documented entry of the register map."""

    name: str
    address: int
    type: str
    description: str
    words: int = 1


#: Holding (and input) registers.
REGISTER_FIELDS: tuple[Field, ...] = (
    Field("state", 0, "uint16", "machine state: 0 off, 1 running, 2 idle, 3 down, 4 planned stop"),
    Field(
        "status_word",
        1,
        "uint16",
        "bit 0 run, bit 1 fault active, bit 2 idle, bit 3 planned stop, bit 4 powered",
    ),
    Field("fault_code", 2, "uint16", "active fault code, 0 = none"),
    Field(
        "alarm_word", 3, "uint16", "bit N set for the active fault (alarm_bits table; 15 = other)"
    ),
    Field("run", 4, "uint16", "1 while running, else 0"),
    Field("restart_count", 5, "uint16", "PLC restarts since simulator start"),
    Field("scratch", 6, "uint16", "writable scratch registers 6..9 (setpoints)", 4),
    Field("good32", 10, "uint32", "good parts, 32-bit, wraps at 2^32", 2),
    Field("scrap32", 12, "uint32", "scrap parts, 32-bit, wraps at 2^32", 2),
    Field("total32", 14, "uint32", "total parts, 32-bit, wraps at 2^32", 2),
    Field("good16", 16, "uint16", "good parts, 16-bit, wraps at 65536"),
    Field("scrap16", 17, "uint16", "scrap parts, 16-bit, wraps at 65536"),
    Field("total16", 18, "uint16", "total parts, 16-bit, wraps at 65536"),
    Field("speed", 20, "float32", "speed in parts per minute (0 when not running)", 2),
    Field("temperature", 22, "float64", "temperature in °C", 4),
    Field("cycle_time", 26, "float32", "last cycle time in seconds", 2),
    Field(
        "status_text", 30, "string", f"status text, {STATUS_TEXT_CHARS} ASCII chars, NUL padded", 8
    ),
    Field("good64", 40, "uint64", "good parts, 64-bit", 4),
)

#: Coils and discrete inputs.
BIT_FIELDS: tuple[Field, ...] = (
    Field("running", 0, "bool", "run bit"),
    Field("fault_active", 1, "bool", "a fault code is active"),
    Field("powered", 2, "bool", "machine powered"),
    Field("scratch", 8, "bool", "writable scratch coils 8..15", 8),
)

COUNTER_ADDRESS = {
    16: {"good": 16, "scrap": 17, "total": 18},
    32: {"good": 10, "scrap": 12, "total": 14},
}


def _order(raw: bytes, order: WordOrder) -> list[int]:
    """Big-endian bytes of a value -> registers in the given word order."""
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if order in (WordOrder.CDAB, WordOrder.DCBA):
        words.reverse()
    if order in (WordOrder.BADC, WordOrder.DCBA):
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def encode_value(value: int | float, type_: str, order: WordOrder) -> list[int]:
    """Encode one numeric value of a map type (uint32, float64, ...) into registers."""
    fmt = {
        "uint16": ">H",
        "int16": ">h",
        "uint32": ">I",
        "int32": ">i",
        "uint64": ">Q",
        "int64": ">q",
        "float32": ">f",
        "float64": ">d",
    }[type_]
    if type_.startswith("uint"):
        value = int(value) % (1 << (8 * struct.calcsize(fmt)))
    raw = struct.pack(fmt, value)
    if len(raw) == 2:
        return [int.from_bytes(raw, "big")]
    return _order(raw, order)


def encode_string(text: str, chars: int) -> list[int]:
    """ASCII text in ``chars`` characters (NUL padded), two per register, first char high."""
    raw = text.encode("ascii", "replace")[:chars].ljust(chars, b"\0")
    if len(raw) % 2:
        raw += b"\0"
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def build_registers(snap: Snapshot, spec: MachineSpec, scratch: list[int]) -> list[int]:
    """The holding/input register image (``REGISTER_COUNT`` words) of a snapshot."""
    o = spec.quirks.word_order
    regs = [0] * REGISTER_COUNT
    regs[0] = int(snap.state)
    regs[1] = snap.status_word
    regs[2] = snap.fault_code & 0xFFFF
    regs[3] = snap.alarm_word
    regs[4] = 1 if snap.running else 0
    regs[5] = snap.restart_count & 0xFFFF
    regs[6:10] = scratch
    regs[10:12] = encode_value(snap.good, "uint32", o)
    regs[12:14] = encode_value(snap.scrap, "uint32", o)
    regs[14:16] = encode_value(snap.total, "uint32", o)
    regs[16] = snap.good & 0xFFFF
    regs[17] = snap.scrap & 0xFFFF
    regs[18] = snap.total & 0xFFFF
    regs[20:22] = encode_value(snap.speed, "float32", o)
    regs[22:26] = encode_value(snap.temperature, "float64", o)
    regs[26:28] = encode_value(snap.cycle_time_s, "float32", o)
    regs[30:38] = encode_string(snap.status_text, STATUS_TEXT_CHARS)
    regs[40:44] = encode_value(snap.good, "uint64", o)
    return regs


def build_bits(snap: Snapshot, scratch: list[bool]) -> list[bool]:
    """The coil/discrete-input image (``COIL_COUNT`` bits) of a snapshot."""
    bits = [False] * COIL_COUNT
    bits[0] = snap.running
    bits[1] = snap.fault_code != 0
    bits[2] = snap.status_word & (1 << 4) != 0
    bits[8:16] = scratch
    return bits
