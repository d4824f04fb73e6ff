"""Decoders: known values, and a property test against ``struct`` for every type and order."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import DataType, WordOrder, encode, make_decoder, register_width
from edge_agent.errors import DecodeError

FORMATS = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}


def registers_for(big_endian: bytes, order: WordOrder) -> list[int]:
    """Lay out the value's big-endian bytes in registers the way a device with ``order`` does."""
    words = [big_endian[i : i + 2] for i in range(0, len(big_endian), 2)]
    if order in (WordOrder.BADC, WordOrder.DCBA):
        words = [w[::-1] for w in words]
    if order in (WordOrder.CDAB, WordOrder.DCBA) and len(words) > 1:
        words.reverse()
    return [int.from_bytes(w, "big") for w in words]


@pytest.mark.parametrize(
    ("dtype", "order", "regs", "expected"),
    [
        (DataType.UINT16, WordOrder.ABCD, [0x1234], 0x1234),
        (DataType.UINT16, WordOrder.BADC, [0x1234], 0x3412),
        (DataType.INT16, WordOrder.ABCD, [0xFFFE], -2),
        (DataType.INT16, WordOrder.DCBA, [0xFEFF], -2),
        (DataType.UINT32, WordOrder.ABCD, [0x0001, 0x0002], 0x00010002),
        (DataType.UINT32, WordOrder.CDAB, [0x0002, 0x0001], 0x00010002),
        (DataType.UINT32, WordOrder.BADC, [0x0100, 0x0200], 0x00010002),
        (DataType.UINT32, WordOrder.DCBA, [0x0200, 0x0100], 0x00010002),
        (DataType.FLOAT32, WordOrder.ABCD, [0x449A, 0x5000], 1234.5),
        (DataType.FLOAT32, WordOrder.CDAB, [0x5000, 0x449A], 1234.5),
        (DataType.INT64, WordOrder.CDAB, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], -1),
        (DataType.UINT64, WordOrder.CDAB, [4, 3, 2, 1], 0x0001000200030004),
    ],
)
def test_known_values(dtype: DataType, order: WordOrder, regs: list[int], expected: object) -> None:
    """Documented register layouts decode to the values a controls engineer expects."""
    assert make_decoder(dtype, order)(regs, 0) == expected


@given(data=st.data())
def test_every_numeric_type_and_order_matches_struct(data: st.DataObject) -> None:
    """Random bytes decode exactly as ``struct`` reads them, for every numeric type and order."""
    dtype = data.draw(st.sampled_from(sorted(FORMATS, key=lambda d: d.value)))
    order = data.draw(st.sampled_from(list(WordOrder)))
    fmt = FORMATS[dtype]
    raw = data.draw(st.binary(min_size=struct.calcsize(fmt), max_size=struct.calcsize(fmt)))
    (expected,) = struct.unpack(">" + fmt, raw)
    regs = registers_for(raw, order)
    pad = data.draw(st.integers(min_value=0, max_value=3))
    words = [0] * pad + regs + [0xFFFF]
    decode = make_decoder(dtype, order)
    if isinstance(expected, float) and not math.isfinite(expected):
        with pytest.raises(DecodeError):
            decode(words, pad)
        return
    assert decode(words, pad) == expected
    assert register_width(dtype) == len(regs)
    assert encode(expected, dtype, order) == regs


@given(
    text=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20
    )
)
def test_strings_round_trip_in_every_order(text: str) -> None:
    """Fixed-length ASCII strings decode from two characters per register in every order."""
    for order in WordOrder:
        regs = encode(text, DataType.STRING, order, length=20)
        assert len(regs) == 10
        assert make_decoder(DataType.STRING, order, length=20)(regs, 0) == text


def test_string_byte_layout_and_invalid_utf8() -> None:
    """A string's first character is the high byte; invalid UTF-8 raises DecodeError."""
    assert make_decoder(DataType.STRING, length=3)([0x4142, 0x4300], 0) == "ABC"
    assert make_decoder(DataType.STRING, WordOrder.BADC, length=3)([0x4241, 0x0043], 0) == "ABC"
    with pytest.raises(DecodeError):
        make_decoder(DataType.STRING, length=2)([0xFFFE], 0)


def test_bits_bool_and_scaling() -> None:
    """Bit N of a register, bools from bit tables, and scale/offset produce the right values."""
    assert make_decoder(DataType.BIT, bit=15)([0x8000], 0) is True
    assert make_decoder(DataType.BIT, bit=0)([0x8000], 0) is False
    assert make_decoder(DataType.BOOL)([False, True], 1) is True
    assert make_decoder(DataType.INT16, scale=0.1, offset=-5.0)([250], 0) == pytest.approx(20.0)
    assert make_decoder(DataType.UINT16)([7], 0) == 7


def test_nan_is_a_decode_error() -> None:
    """A NaN float32 is reported as a decode error instead of a bogus value."""
    with pytest.raises(DecodeError):
        make_decoder(DataType.FLOAT32)([0x7FC0, 0x0000], 0)
