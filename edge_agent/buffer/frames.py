"""The frame codec: one poll's values (a block read, a notification batch) as one BLOB.

A *frame* is what the buffer stores per poll instead of one row per value: the values
in the order of the poll's *layout* (its ordered tag list, stored once per device and
tag list, see :mod:`.blocks`), plus per-value quality, reason and source time only when
one of them is not the plain case. :func:`encode` picks the smallest of these encodings
(the ``enc`` column, a small int):

* ``U8``/``I8``/``U16``/``I16``/``U32``/``I32``/``I64``: every value is an ``int``
  (not ``bool``) and every reading is good without reason or source time: the values,
  little-endian, in the narrowest (unsigned or signed) width that holds them, or, with
  the :data:`DELTA` flag, the first value and the differences between neighbours when
  those fit a narrower width (registers of one block are often close to each other);
* ``F64``: every value is a ``float`` (same plain condition), IEEE 754 doubles
  (NaN and infinities round-trip);
* ``JSON``: anything else (``None``, ``bool``, lists, strings, mixed types, bad
  quality, reasons, source times): ``{"v": [...], "q": [...], "r": [...], "s": [...]}``
  with ``q``/``r``/``s`` present only when needed (``allow_nan``: Python's JSON
  round-trips NaN).

Flags on ``enc``: :data:`ZLIB` when ``zlib`` made the payload smaller (measured: a
125-register block of a counter-like load shrinks from 125 to about 20 bytes; random
16-bit values barely shrink and stay raw), :data:`MASK` when the frame holds only some
of the layout's positions (``raw = "changes"``): a bitmap of the present positions
precedes the values, :data:`SOURCE` when the values' source times (OPC-UA) follow
the packed values as doubles. Pure functions: no I/O, no state.
"""

from __future__ import annotations

import array
import json
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, compress
from operator import sub
from typing import Any, TypeVar

T = TypeVar("T")

JSON = 0
I8 = 1
I16 = 2
I32 = 3
I64 = 4
F64 = 5
U8 = 6
U16 = 7
U32 = 8
KIND = 0x0F
ZLIB = 0x10
MASK = 0x20
DELTA = 0x40
SOURCE = 0x80

# (kind, array typecode, lowest, end): narrowest first, unsigned before signed.
_INT_CODES = (
    (U8, "B", 0, 1 << 8),
    (I8, "b", -(1 << 7), 1 << 7),
    (U16, "H", 0, 1 << 16),
    (I16, "h", -(1 << 15), 1 << 15),
    (U32, "I", 0, 1 << 32),
    (I32, "i", -(1 << 31), 1 << 31),
    (I64, "q", -(1 << 63), 1 << 63),
)
_WIDTH = {"B": 1, "b": 1, "H": 2, "h": 2, "I": 4, "i": 4, "q": 8}
_TYPECODE = {kind: code for kind, code, _, _ in _INT_CODES} | {F64: "d"}
_BIG = sys.byteorder == "big"
# Below this many payload bytes zlib's own header and checksum (6 bytes) rarely pay.
ZLIB_MIN = 24
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded frame: values in layout order, or at ``present`` positions when masked.

    ``quality`` (codes of :data:`~edge_agent.buffer.schema.QUALITY_CODES`), ``reason``
    and ``source_ts`` are None when every value is good, without reason or source time.
    """

    values: list[object]
    present: list[int] | None = None
    quality: list[int] | None = None
    reason: list[str] | None = None
    source_ts: list[float | None] | None = None


def _pack(kind: int, numbers: Sequence[int] | Sequence[float]) -> bytes:
    packed = array.array(_TYPECODE[kind], numbers)
    if _BIG:
        packed.byteswap()
    return packed.tobytes()


def _unpack(kind: int, data: bytes) -> list[Any]:
    packed = array.array(_TYPECODE[kind])
    packed.frombytes(data)
    if _BIG:
        packed.byteswap()
    return packed.tolist()


def _narrowest(numbers: Sequence[int]) -> tuple[int, int] | None:
    """``(kind, bytes per value)`` of the narrowest array holding ``numbers``."""
    low, high = min(numbers), max(numbers)
    for kind, code, lowest, end in _INT_CODES:
        if lowest <= low and high < end:
            return kind, _WIDTH[code]
    return None  # beyond 64 bits


def _ints(values: Sequence[int]) -> tuple[int, bytes] | None:
    """The values as they are, or (DELTA) the first as int64 and then the differences.

    Whichever is smaller before compression.
    """
    plain = _narrowest(values)
    n = len(values)
    if n > 1 and -(1 << 63) <= values[0] < 1 << 63:
        deltas = list(map(sub, values[1:], values[:-1]))
        delta = _narrowest(deltas)
        if delta is not None and (plain is None or 8 + delta[1] * (n - 1) < plain[1] * n):
            return delta[0] | DELTA, _pack(I64, values[:1]) + _pack(delta[0], deltas)
    if plain is not None:
        return plain[0], _pack(plain[0], values)
    return None  # beyond 64 bits: JSON


def encode(
    values: Sequence[object],
    quality: Sequence[int] | None = None,
    reason: Sequence[str] | None = None,
    source_ts: Sequence[float | None] | None = None,
    present: Sequence[bool] | None = None,
) -> tuple[int, bytes]:
    """``(enc, data)`` of one frame.

    Args:
        values: The values (of the present positions only, when ``present`` is given).
        quality: Quality codes per value, or None when all are good (0).
        reason: Reasons per value, or None when all are empty.
        source_ts: Source times per value, or None when there are none.
        present: Per layout position, whether the frame holds its value (``changes``).
    """
    if quality is not None and not any(quality):
        quality = None
    if reason is not None and not any(reason):
        reason = None
    if source_ts is not None and all(t is None for t in source_ts):
        source_ts = None
    kind, data = JSON, b""
    types = set(map(type, values))
    # Source times (OPC-UA) of good values ride along as doubles (SOURCE flag).
    sources: list[float] | None = None
    if source_ts is not None and None not in source_ts:
        sources, source_ts = list(source_ts), None  # type: ignore[arg-type]  # no None
    plain = quality is None and reason is None and source_ts is None and values
    if plain and types == {int}:
        packed = _ints(values)  # type: ignore[arg-type]  # checked: all int
        if packed is not None:
            kind, data = packed  # kind may carry DELTA
    elif plain and types == {float}:
        kind, data = F64, _pack(F64, values)  # type: ignore[arg-type]  # checked: all float
    if kind != JSON and sources is not None:
        kind, data = kind | SOURCE, data + _pack(F64, sources)
    elif sources is not None:
        source_ts = sources
    if kind == JSON:
        obj: dict[str, object] = {"v": list(values)}
        if quality is not None:
            obj["q"] = list(quality)
        if reason is not None:
            obj["r"] = list(reason)
        if source_ts is not None:
            obj["s"] = list(source_ts)
        data = _dumps(obj).encode()
    enc = kind
    if present is not None and not all(present):
        enc |= MASK
        bits = bytearray((len(present) + 7) // 8)
        for i, here in enumerate(present):
            if here:
                bits[i >> 3] |= 1 << (i & 7)
        data = bytes(bits) + data
    if len(data) >= ZLIB_MIN:
        small = zlib.compress(data, 6)
        if len(small) < len(data):
            enc, data = enc | ZLIB, small
    return enc, data


def decode(enc: int, data: bytes, size: int) -> Decoded:
    """The frame ``(enc, data)`` of a layout of ``size`` tags."""
    if enc & ZLIB:
        data = zlib.decompress(data)
    present: list[int] | None = None
    if enc & MASK:
        n = (size + 7) // 8
        bits, data = data[:n], data[n:]
        present = [i for i in range(size) if bits[i >> 3] >> (i & 7) & 1]
    kind = enc & KIND
    if kind == JSON:
        obj = json.loads(data)
        return Decoded(obj["v"], present, obj.get("q"), obj.get("r"), obj.get("s"))
    sources: list[float | None] | None = None
    if enc & SOURCE:
        n = 8 * (len(present) if present is not None else size)
        sources, data = _unpack(F64, bytes(data[-n:])), data[:-n]
    if enc & DELTA:
        first = _unpack(I64, bytes(data[:8]))
        values = list(accumulate(first + _unpack(kind, bytes(data[8:]))))
    else:
        values = _unpack(kind, bytes(data))
    return Decoded(values, present, source_ts=sources)


def positions(decoded: Decoded, size: int) -> list[int]:
    """Layout positions of the decoded values, in order."""
    return decoded.present if decoded.present is not None else list(range(size))


def select(items: Sequence[T], keep: Sequence[bool]) -> list[T]:
    """The items whose ``keep`` flag is set (C loop)."""
    return list(compress(items, keep))
