"""Whole-block decoding: one struct unpack gives what every tag's own decoder gives (issue 20)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.codec import (
    DataType,
    Field,
    WordOrder,
    make_block_decoder,
    make_decoder,
    register_width,
    struct_char,
)
from drivers.modbus.planner import plan_device, split_block
from edge_agent.errors import DecodeError
from tests.drivers.modbus.conftest import make_device

NUMERIC = [
    DataType.INT16,
    DataType.UINT16,
    DataType.INT32,
    DataType.UINT32,
    DataType.INT64,
    DataType.UINT64,
    DataType.FLOAT32,
    DataType.FLOAT64,
]

tag = st.tuples(
    st.sampled_from(NUMERIC),
    st.sampled_from(list(WordOrder)),
    st.integers(0, 3),  # gap before the tag
    st.sampled_from([(1.0, 0.0), (0.1, 0.0), (2.0, -5.0)]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(tag, min_size=1, max_size=20), st.data())
def test_block_decoder_equals_the_tag_decoders(tags: list[Any], data: st.DataObject) -> None:
    """Any layout the block decoder accepts decodes exactly like tag-by-tag decoding."""
    fields: list[Field] = []
    decoders = []
    pos = 0
    for dtype, order, gap, (scale, add) in tags:
        offset = pos + gap
        fields.append(Field(offset, struct_char(dtype, order), scale, add))
        decoders.append((make_decoder(dtype, order, scale=scale, offset=add), offset))
        pos = offset + register_width(dtype)
    count = pos + data.draw(st.integers(0, 2))
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=count, max_size=count))
    decode_all = make_block_decoder(fields, count)
    eligible = all(f.fmt for f in fields)
    assert (decode_all is not None) == eligible
    try:
        expected = [decode(words, offset) for decode, offset in decoders]
    except DecodeError:
        if decode_all is not None:
            with pytest.raises(DecodeError):
                decode_all(words)
        return
    if decode_all is not None:
        got = decode_all(words)
        assert got == expected
        assert [type(v) for v in got] == [type(v) for v in expected]


def test_non_finite_float_raises_and_overlaps_or_bits_are_not_block_decoded() -> None:
    """NaN makes the block fall back to per tag; overlapping fields and swaps get no decoder."""
    nan = Field(0, struct_char(DataType.FLOAT32))
    decode_all = make_block_decoder([nan, Field(2, "H")], 3)
    assert decode_all is not None
    assert decode_all([0x3FC0, 0, 7]) == [1.5, 7]
    with pytest.raises(DecodeError):
        decode_all([0x7FC0, 0, 7])
    assert make_block_decoder([Field(0, "i"), Field(1, "H")], 2) is None  # overlap
    assert make_block_decoder([Field(0, "H")], 0) is None  # does not fit
    assert make_block_decoder([], 4) is None
    assert struct_char(DataType.FLOAT32, WordOrder.CDAB) == ""
    assert struct_char(DataType.INT16, WordOrder.CDAB) == "h"  # no byte swap for one word
    assert struct_char(DataType.INT16, WordOrder.BADC) == ""
    assert struct_char(DataType.STRING) == struct_char(DataType.BIT) == ""


def test_planner_gives_register_blocks_a_block_decoder_and_keeps_it_when_split() -> None:
    """125 holding registers (the gateway load) decode in one call; split halves do too."""
    tags: dict[str, dict[str, Any]] = {
        f"r{i}": {"table": "holding", "address": i} for i in range(125)
    }
    tags["coil"] = {"table": "coil", "address": 0}
    dev = make_device(
        "m1",
        protocol="modbus_tcp",
        endpoint="127.0.0.1:5020",
        unit_id=1,
        addressing="zero",
        tags=tags,
    )
    (interval,) = plan_device(dev).intervals
    regs = next(b for b in interval.blocks if not b.table.is_bits)
    bits = next(b for b in interval.blocks if b.table.is_bits)
    assert bits.decode_all is None
    assert regs.decode_all is not None
    words = list(range(1000, 1125))
    got = regs.decode_all(words)
    assert got == words
    assert got is not words  # a copy: the values outlive the response
    halves = split_block(regs)
    assert halves is not None
    for half in halves:
        assert half.decode_all is not None
        part = words[half.start : half.start + half.count]
        assert half.decode_all(part) == [pt.decode(part, pt.offset) for pt in half.tags]
