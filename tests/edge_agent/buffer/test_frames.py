"""The frame codec: every kind of poll round-trips exactly, and the compact forms are used."""

from __future__ import annotations

import math

import pytest

from edge_agent.buffer import frames


def roundtrip(values: list[object], **kw: object) -> frames.Decoded:
    enc, data = frames.encode(values, **kw)  # type: ignore[arg-type]
    size = len(kw["present"]) if kw.get("present") is not None else len(values)  # type: ignore[arg-type]
    return frames.decode(enc, data, size)


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([1, 2, 3, 200], frames.U8),  # the narrowest width, unsigned first
        ([0, -5, 127, -128], frames.I8),
        ([70000, 70001], frames.U32),
        ([2**40, 2**40 + 1], frames.U8 | frames.DELTA),
        ([-(2**40), 2**40 + 1], frames.I64),
        ([1000 + a for a in range(20)], frames.U8 | frames.DELTA),  # int64 + 19 x 1 byte
        ([2**70, 1], frames.JSON),  # beyond 64 bits
        ([1.5, -0.25, 1e300], frames.F64),
        ([1, 2.5], frames.JSON),  # mixed int and float keep their types
        ([True, False, 1], frames.JSON),
        ([None, 3], frames.JSON),
        (["a", "é", ""], frames.JSON),
        ([[1, 2], [3]], frames.JSON),
        ([7], frames.U8),
    ],
)
def test_values_round_trip_with_their_types(values: list[object], kind: int) -> None:
    enc, data = frames.encode(values)
    assert enc & (frames.KIND | frames.DELTA) == kind
    got = frames.decode(enc, data, len(values)).values
    assert got == values
    assert [type(v) for v in got] == [type(v) for v in values]


def test_nan_and_infinities_round_trip() -> None:
    got = roundtrip([math.nan, math.inf, -math.inf, 1.0]).values
    assert math.isnan(got[0])
    assert got[1:] == [math.inf, -math.inf, 1.0]
    mixed = roundtrip([math.nan, None]).values
    assert math.isnan(mixed[0])
    assert mixed[1] is None


def test_quality_reasons_and_source_times_only_when_needed() -> None:
    d = roundtrip([None, 2, 3], quality=[1, 0, 2], reason=["timeout", "", ""], source_ts=None)
    assert (d.values, d.quality, d.reason, d.source_ts) == (
        [None, 2, 3],
        [1, 0, 2],
        ["timeout", "", ""],
        None,
    )
    plain = roundtrip([1, 2], quality=[0, 0], reason=["", ""], source_ts=[None, None])
    assert (plain.quality, plain.reason, plain.source_ts) == (None, None, None)
    assert frames.encode([1, 2], [0, 0], ["", ""], [None, None])[0] == frames.U8
    src = roundtrip([1.0], source_ts=[1_700_000_000.25])
    assert src.source_ts == [1_700_000_000.25]


def test_masked_frame_holds_only_present_positions() -> None:
    present = [False, True, False, False, False, False, False, False, False, True]
    d = roundtrip([7, 9], present=present)
    assert d.values == [7, 9]
    assert frames.positions(d, 10) == [1, 9]
    full = roundtrip([7, 9], present=[True, True])
    assert full.present is None
    assert frames.positions(full, 2) == [0, 1]


def test_a_counter_like_block_compresses_and_random_values_stay_raw() -> None:
    """125 registers of one block, each one above the last: about 20 bytes, not 250."""
    enc, data = frames.encode([(1000 + a) & 0xFFFF for a in range(125)])
    assert enc & frames.ZLIB
    assert len(data) < 30
    assert frames.decode(enc, data, 125).values == [1000 + a for a in range(125)]
    noisy = [(a * 7919 * 104729) % 65536 for a in range(125)]
    enc2, data2 = frames.encode(noisy)
    assert frames.decode(enc2, data2, 125).values == noisy
    assert len(data2) <= 2 * 125  # uint16 as they are (deltas would need 4 bytes)


def test_source_times_of_good_values_are_packed_beside_them() -> None:
    """OPC-UA: values with source times stay binary (16 bytes for one double), exact."""
    stamps = [1_764_190_800.123456, 1_764_190_800.5]
    enc, data = frames.encode([21.5, 22.25], source_ts=stamps)
    assert enc & frames.SOURCE
    assert enc & frames.KIND == frames.F64
    d = frames.decode(enc, data, 2)
    assert (d.values, d.source_ts) == ([21.5, 22.25], stamps)
    one = frames.encode([21.5], source_ts=stamps[:1])
    assert len(one[1]) == 16
    present = [False, True, False, True]
    masked = roundtrip([7, 300], source_ts=stamps, present=present)
    assert (masked.values, masked.source_ts, masked.present) == ([7, 300], stamps, [1, 3])
    partial = roundtrip([1.0, 2.0], source_ts=[stamps[0], None])  # JSON keeps the None
    assert partial.source_ts == [stamps[0], None]
