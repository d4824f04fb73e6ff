"""Register encoding: word orders, wrapping, floats and strings (pure)."""

from __future__ import annotations

import struct

import pytest
from pymodbus.client import AsyncModbusTcpClient

from simulators.clock import ManualClock
from simulators.model import Machine
from simulators.registers import build_registers, encode_string, encode_value
from simulators.scenario import MachineSpec, Quirks, WordOrder


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (WordOrder.ABCD, [0x1122, 0x3344]),
        (WordOrder.CDAB, [0x3344, 0x1122]),
        (WordOrder.BADC, [0x2211, 0x4433]),
        (WordOrder.DCBA, [0x4433, 0x2211]),
    ],
)
def test_uint32_word_orders(order: WordOrder, expected: list[int]) -> None:
    """0x11223344 is laid out as the four classic word/byte orders."""
    assert encode_value(0x11223344, "uint32", order) == expected


def test_uint64_cdab_reverses_four_words() -> None:
    """For 64-bit values CDAB means least significant word first."""
    v = 0x0102030405060708
    assert encode_value(v, "uint64", WordOrder.ABCD) == [0x0102, 0x0304, 0x0506, 0x0708]
    assert encode_value(v, "uint64", WordOrder.CDAB) == [0x0708, 0x0506, 0x0304, 0x0102]
    assert encode_value(v, "uint64", WordOrder.DCBA) == [0x0807, 0x0605, 0x0403, 0x0201]


def test_floats_match_pymodbus_decoding() -> None:
    """float32/float64 in ABCD and CDAB decode with pymodbus's own converter."""
    c = AsyncModbusTcpClient
    f32 = encode_value(3.5, "float32", WordOrder.ABCD)
    assert c.convert_from_registers(f32, c.DATATYPE.FLOAT32) == 3.5
    f64 = encode_value(-1234.5678, "float64", WordOrder.CDAB)
    got = c.convert_from_registers(f64, c.DATATYPE.FLOAT64, word_order="little")
    assert got == -1234.5678


def test_counters_wrap_at_width() -> None:
    """Counters are taken modulo 2^16 / 2^32 like an overflowing PLC word."""
    assert encode_value(65536 + 5, "uint16", WordOrder.ABCD) == [5]
    assert encode_value(2**32 + 7, "uint32", WordOrder.ABCD) == [0, 7]


def test_string_packing() -> None:
    """Strings are ASCII, first char in the high byte, NUL padded to the fixed length."""
    regs = encode_string("FAULT 42", 16)
    assert len(regs) == 8
    raw = b"".join(struct.pack(">H", r) for r in regs)
    assert raw == b"FAULT 42" + b"\0" * 8


def test_register_image_of_a_rolled_over_machine() -> None:
    """A machine started near 2^32 shows wrapped 32/16-bit counters and the full 64-bit one."""
    spec = MachineSpec(
        id="M",
        unit_id=1,
        ideal_cycle_s=1.0,
        cycle_jitter=0.0,
        quirks=Quirks(counter_start=2**32 - 3, word_order=WordOrder.CDAB),
    )
    m = Machine(spec, seed=1, wall_ts=ManualClock().wall_ts)
    m.advance_to(10.5)
    regs = build_registers(m.snapshot(), spec, [0, 0, 0, 0])
    good = 2**32 - 3 + 10
    assert regs[10:12] == [(good % 2**32) & 0xFFFF, (good % 2**32) >> 16]  # CDAB
    assert regs[16] == good & 0xFFFF
    assert regs[40:44] == encode_value(good, "uint64", WordOrder.CDAB)
    assert regs[0] == 1
    assert regs[4] == 1
