"""Pure decoders from raw Modbus registers or bits to tag values.

A decoder is chosen once per tag at plan time by :func:`make_decoder` and is
then a plain function ``decode(words, offset) -> value`` with no branching on
the data type or byte order in the hot loop. This module does no I/O and
knows nothing about pymodbus.

Byte-order convention: write the value's big-endian bytes as ``A B C D``
(``A`` most significant). The four orders say how they sit in consecutive
registers: ``ABCD`` = ``[AB, CD]`` (Modbus standard), ``CDAB`` = word swap
``[CD, AB]``, ``BADC`` = byte swap inside each word ``[BA, DC]``, ``DCBA`` =
fully little-endian ``[DC, BA]``. For 64-bit values the word sequence is
reversed as a whole for CDAB/DCBA. For 16-bit values only the byte swap
matters. Strings are two characters per register, first character in the
high byte, with BADC/DCBA swapping the two bytes.

Guarantees: decoders never mutate their input; a value that cannot be
represented (invalid UTF-8, NaN or infinity) raises
:class:`~edge_agent.errors.DecodeError`; scale and offset are applied only to
numeric types and turn the value into a float.
"""

from __future__ import annotations

import enum
import functools
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_agent.errors import DecodeError
from edge_agent.model import Value

#: ``decode(words, offset)``: words are the registers (ints) or bits (bools) of one block.
Decoder = Callable[[Sequence[int], int], Value]


class DataType(str, enum.Enum):
    """Closed set of tag data types."""

    BOOL = "bool"
    BIT = "bit"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"


class WordOrder(str, enum.Enum):
    """Byte/word order of multi-byte values (see the module docstring)."""

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"

    @property
    def swaps_words(self) -> bool:
        """Whether the register sequence is reversed."""
        return self in (WordOrder.CDAB, WordOrder.DCBA)

    @property
    def swaps_bytes(self) -> bool:
        """Whether the two bytes inside each register are swapped."""
        return self in (WordOrder.BADC, WordOrder.DCBA)


#: struct format character and register count of every fixed-width numeric type.
_NUMERIC: dict[DataType, tuple[str, int]] = {
    DataType.INT16: ("h", 1),
    DataType.UINT16: ("H", 1),
    DataType.INT32: ("i", 2),
    DataType.UINT32: ("I", 2),
    DataType.INT64: ("q", 4),
    DataType.UINT64: ("Q", 4),
    DataType.FLOAT32: ("f", 2),
    DataType.FLOAT64: ("d", 4),
}

#: Types that live in the bit tables (coils, discrete inputs).
BIT_TABLE_TYPES = frozenset({DataType.BOOL})
#: Types that can be scaled.
NUMERIC_TYPES = frozenset(_NUMERIC)


def register_width(dtype: DataType, length: int = 0) -> int:
    """Number of registers (or bits, for ``bool``) a value of this type occupies.

    Args:
        dtype: The data type.
        length: Characters, for ``string`` only.
    """
    if dtype in (DataType.BOOL, DataType.BIT):
        return 1
    if dtype is DataType.STRING:
        return (length + 1) // 2
    return _NUMERIC[dtype][1]


def _finite(value: float) -> float:
    if math.isfinite(value):
        return value
    raise DecodeError(f"not a finite number ({value!r})")


def _numeric_decoder(dtype: DataType, order: WordOrder) -> Decoder:
    fmt, width = _NUMERIC[dtype]
    is_float = dtype in (DataType.FLOAT32, DataType.FLOAT64)
    if width == 1:
        if order.swaps_bytes:

            def swapped16(words: Sequence[int], i: int) -> Value:
                w = words[i]
                v = ((w & 0xFF) << 8) | (w >> 8)
                return v - 0x10000 if fmt == "h" and v & 0x8000 else v

            return swapped16
        if fmt == "H":
            return lambda words, i: words[i]
        return lambda words, i: words[i] - 0x10000 if words[i] & 0x8000 else words[i]
    # Pack the registers in the order that yields the big-endian byte string A B C D ...
    pack = struct.Struct(("<" if order.swaps_bytes else ">") + "H" * width).pack
    unpack = struct.Struct(">" + fmt).unpack
    reverse = order.swaps_words

    if reverse:

        def multi(words: Sequence[int], i: int) -> Value:
            return unpack(pack(*reversed(words[i : i + width])))[0]  # type: ignore[no-any-return]

    else:

        def multi(words: Sequence[int], i: int) -> Value:
            return unpack(pack(*words[i : i + width]))[0]  # type: ignore[no-any-return]

    if not is_float:
        return multi

    def floating(words: Sequence[int], i: int) -> Value:
        return _finite(multi(words, i))  # type: ignore[arg-type]

    return floating


def _string_decoder(length: int, order: WordOrder) -> Decoder:
    width = register_width(DataType.STRING, length)
    pack = struct.Struct(("<" if order.swaps_bytes else ">") + "H" * width).pack

    def decode_string(words: Sequence[int], i: int) -> Value:
        raw = pack(*words[i : i + width])[:length]
        try:
            return raw.decode("utf-8").rstrip("\x00 ")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"invalid UTF-8 in string: {raw!r}") from exc

    return decode_string


@functools.cache
def make_decoder(
    dtype: DataType,
    order: WordOrder = WordOrder.ABCD,
    *,
    bit: int = 0,
    length: int = 0,
    scale: float = 1.0,
    offset: float = 0.0,
) -> Decoder:
    """Build the decoder for one tag.

    Args:
        dtype: Data type of the tag.
        order: Byte/word order.
        bit: Bit number (0 = least significant) for ``bit``.
        length: Characters for ``string``.
        scale: Multiplier for numeric types (``value * scale + offset``).
        offset: Added after scaling.

    Returns:
        ``decode(words, i)`` reading the value that starts at ``words[i]``. Decoders are
        pure and shared: tags with the same type, order and scaling get the same function
        (12,500 tags on a large gateway need a handful of decoders, not 12,500 closures).
    """
    if dtype is DataType.BOOL:
        return lambda words, i: bool(words[i])
    if dtype is DataType.BIT:
        mask = 1 << bit
        return lambda words, i: bool(words[i] & mask)
    if dtype is DataType.STRING:
        return _string_decoder(length, order)
    base = _numeric_decoder(dtype, order)
    if scale == 1.0 and offset == 0.0:
        return base

    def scaled(words: Sequence[int], i: int) -> Value:
        return base(words, i) * scale + offset  # type: ignore[operator]

    return scaled


#: Registers per struct character of :data:`_NUMERIC`.
_WIDTH_OF_CHAR = dict(_NUMERIC.values())

#: ``decode_all(words) -> values``: every tag of one block, in the block's tag order.
BlockDecoder = Callable[[Sequence[int]], list[Value]]


@dataclass(frozen=True, slots=True)
class Field:
    """Where a tag sits in its block and how it decodes, for :func:`make_block_decoder`."""

    offset: int
    fmt: str  # struct character (big-endian), "" when the tag cannot join a block unpack
    scale: float = 1.0
    add: float = 0.0


def struct_char(dtype: DataType, order: WordOrder = WordOrder.ABCD) -> str:
    """The big-endian ``struct`` character of a tag, or "" if one unpack cannot decode it.

    Fixed-width numerics qualify in ``ABCD`` order, 16-bit ones in any order without a
    byte swap; bits, bools, strings and swapped orders do not.
    """
    if dtype not in _NUMERIC:
        return ""
    fmt, width = _NUMERIC[dtype]
    if order.swaps_bytes or (width > 1 and order is not WordOrder.ABCD):
        return ""
    return fmt


def make_block_decoder(fields: Sequence[Field], count: int) -> BlockDecoder | None:
    """One ``struct`` unpack for a whole register block, or None when it cannot apply.

    Applies when every field has a :func:`struct_char`, the fields are in offset order
    and do not overlap, and they fit in ``count`` registers. The decoder packs the
    registers back to bytes and unpacks every value in one call, then scales the scaled
    ones (a block of unscaled ``uint16`` in every register is a copy of the registers).
    It gives exactly what the tags' own decoders give; when a float is NaN or infinite
    it raises :class:`DecodeError` (the caller then decodes tag by tag, so only that
    tag reads bad).
    """
    parts: list[str] = []
    pos = 0
    floats: list[int] = []
    scaled: list[tuple[int, float, float]] = []
    for i, f in enumerate(fields):
        if not f.fmt or f.offset < pos:
            return None
        if f.offset > pos:
            parts.append(f"{2 * (f.offset - pos)}x")
        parts.append(f.fmt)
        pos = f.offset + _WIDTH_OF_CHAR[f.fmt]
        if f.fmt in "fd":
            floats.append(i)
        if f.scale != 1.0 or f.add != 0.0:
            scaled.append((i, f.scale, f.add))
    if not fields or pos > count:
        return None
    if pos < count:
        parts.append(f"{2 * (count - pos)}x")
    if not scaled and parts == ["H"] * count:
        # Unscaled uint16 in every register: the values are the registers themselves.
        return list
    pack = struct.Struct(f">{count}H").pack
    unpack = struct.Struct(">" + "".join(parts)).unpack
    isfinite = math.isfinite

    def decode_all(words: Sequence[int]) -> list[Value]:
        values: list[Value] = list(unpack(pack(*words)))
        for i in floats:
            if not isfinite(values[i]):  # type: ignore[arg-type]
                raise DecodeError(f"not a finite number ({values[i]!r})")
        for i, scale, add in scaled:
            values[i] = values[i] * scale + add  # type: ignore[operator]
        return values

    return decode_all


def encode(
    value: int | float | str, dtype: DataType, order: WordOrder = WordOrder.ABCD, length: int = 0
) -> list[int]:
    """Inverse of the decoders, for simulators, tests and the probe (not used when polling).

    Args:
        value: Number or string to encode.
        dtype: Register data type (not ``bool``/``bit``).
        order: Byte/word order.
        length: Characters, for ``string``.

    Returns:
        The registers as the device would hold them.
    """
    if dtype is DataType.STRING:
        width = register_width(dtype, length)
        raw = str(value).encode("utf-8")[:length].ljust(width * 2, b"\x00")
    else:
        fmt, width = _NUMERIC[dtype]
        raw = struct.pack(">" + fmt, value)
    words = list(struct.unpack(">" + "H" * width, raw))
    if order.swaps_bytes:
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if order.swaps_words and dtype is not DataType.STRING:
        words.reverse()
    return words
