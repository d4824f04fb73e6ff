"""The calculator's retained samples, stored compactly in memory and in its persisted state.

:class:`~edge_agent.kpi.calculator.MachineCalculator` keeps every sample of its
revision horizon (one hour by default), and the points it fed its sweep, so that
a late sample can still be placed exactly. That retention is what grows after a
start, levelling off once the horizon is full (issue 22 item 9: the RSS growth of
the first hour). Measured for one machine polled every 200 ms (18,000 samples in
the horizon): as Python objects 195 bytes per sample plus 96 per fed point
(5.3 MB per machine); column-wise arrays 43 + 34 bytes (1.4 MB); packed blocks,
below, a few bytes (docs/bench-kpi.md).

This module stores the same information column-wise and packed:

* :class:`SampleLog` (a ``Sequence[Sample]``) and :class:`PointLog` (a
  ``Sequence[Point]``) keep each field in an ``array``; every :data:`BLOCK`
  entries the columns are *packed* into one zlib-compressed binary block: times,
  fault and counters as differences to the previous entry (int64), the monotonic
  time as the XOR of its IEEE 754 bits with the previous one's. Steady polling
  makes those small and repetitive: a few bytes per entry instead of 43 / 34.
  Reading the whole log (a rewind after late data, folding the horizon) unpacks
  it for the duration of the call; appending touches only the unpacked tail.
  Items are rebuilt on access, equal to what was stored (a sample's time is its
  integer millisecond ``t_ms``, the only time the calculator reads). Counters
  beyond int64 keep the log unpacked (plain lists), as before.
* :func:`pack_log` (state version 4) writes the log as those blocks,
  ``{"blocks": [{"n": count, "z": base64}, ...]}`` (the blocks already packed in
  memory are reused as they are);
* :func:`encode_log` writes the rows of state version 3,
  ``[dt_ms, run, fault, good, total, flags, mono_s]`` (about 39 bytes):
  ``dt_ms`` is the time since the previous row (the first row: epoch ms), ``flags``
  bit 0 is quality bad, bits 1-2 ``synced`` (0 unknown, 1 false, 2 true), bit 3 is
  unused, and a bad sample stores zeros for its untrusted fields, as the object
  form of state version 2 restored them. :func:`decode_log` reads all three forms.

Nothing is dropped or rounded: every value comes back bit for bit, so results
after a restore or a replay are the same as with plain lists. Pure code, no I/O.

Size: over 400 lines because the packed sample and point logs and their block codec (one
storage format, kept with its encoder and decoder so they cannot drift).
"""

from __future__ import annotations

import base64
import itertools
import math
import operator
import sys
import zlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, overload

from edge_agent.kpi.prepare import Point
from edge_agent.kpi.sample import QUALITY_BAD, QUALITY_GOOD, Sample, sample_from_json

_SYNCED = {None: 0, False: 1, True: 2}
_SYNCED_BACK: tuple[bool | None, ...] = (None, False, True)
_BAD = 1

#: Entries per packed block (the unpacked tail holds fewer than this).
BLOCK = 1024

Column = array | list  # type: ignore[type-arg]
# (entries, zlib-compressed little-endian columns, first time, last time, clean): blocks
# can be dropped or kept whole by time without unpacking; "clean" is a per-log property
# (SampleLog: no sample needs clock correction).
Block = tuple[int, bytes, int, int, bool]


def _compress(column: Column, mask: list[bool]) -> Column:
    kept = itertools.compress(column, mask)
    if isinstance(column, array):
        return array(column.typecode, kept)
    return list(kept)


def _le(column: array) -> bytes:  # type: ignore[type-arg]
    if sys.byteorder == "big":
        column = array(column.typecode, column)
        column.byteswap()
    return column.tobytes()


def _pack(codes: str, delta: Sequence[bool], cols: Sequence[Column], clean: bool) -> Block | None:
    """One block of the columns, or None when one does not fit (a plain list)."""
    arrays = [c for c in cols if isinstance(c, array)]
    if len(arrays) != len(cols) or not len(arrays[0]):
        return None
    n = len(arrays[0])
    parts: list[bytes] = []
    for code, diff, col in zip(codes, delta, arrays, strict=True):
        out: array  # type: ignore[type-arg]
        if code == "d":  # XOR of the float bits with the previous value's
            bits = array("Q")
            bits.frombytes(col.tobytes())
            out = array("Q", bits[:1])
            out.extend(a ^ b for a, b in zip(bits[1:], bits, strict=False))
        elif diff:
            try:
                out = array("q", map(operator.sub, col, itertools.chain((0,), col)))
            except OverflowError:
                return None
        else:
            out = col
        parts.append(_le(out))
    times = arrays[0]
    return n, zlib.compress(b"".join(parts), 6), min(times), max(times), clean


def _unpack(codes: str, delta: Sequence[bool], block: Block) -> list[array]:  # type: ignore[type-arg]
    """The columns of one block.

    Raises:
        ValueError: The block is malformed.
    """
    n, blob = block[0], block[1]
    try:
        raw = zlib.decompress(blob)
    except zlib.error as exc:
        raise ValueError(f"malformed packed log: {exc}") from None
    sizes = [array("Q" if code == "d" else code).itemsize * n for code in codes]
    if n < 0 or len(raw) != sum(sizes):
        raise ValueError("malformed packed log: wrong length")
    cols: list[array] = []  # type: ignore[type-arg]
    pos = 0
    for code, diff, size in zip(codes, delta, sizes, strict=True):
        col: array = array("Q" if code == "d" else code)  # type: ignore[type-arg]
        col.frombytes(raw[pos : pos + size])
        pos += size
        if sys.byteorder == "big":
            col.byteswap()
        if code == "d":
            bits = array("Q", itertools.accumulate(col, lambda a, b: a ^ b))
            col = array("d")
            col.frombytes(bits.tobytes())
        elif diff:
            try:
                col = array("q", itertools.accumulate(col))
            except OverflowError:
                raise ValueError("malformed packed log: value out of range") from None
        cols.append(col)
    return cols


class _Packed:
    """Columns in packed blocks plus an unpacked tail (shared by both logs)."""

    __slots__ = ("_blocks", "_cols", "_packed_n")
    CODES: ClassVar[str] = ""
    DELTA: ClassVar[tuple[bool, ...]] = ()

    def __init__(self) -> None:
        self._blocks: list[Block] = []
        self._packed_n = 0
        self._cols: list[Column] = [array(code) for code in self.CODES]

    def _clean(self, cols: Sequence[Column]) -> bool:
        """The block property of these columns (see :data:`Block`)."""
        return True

    def _block(self, cols: Sequence[Column]) -> Block | None:
        return _pack(self.CODES, self.DELTA, cols, self._clean(cols))

    def _seal(self) -> None:
        """Pack the tail when it is full (and fits the packed form)."""
        if len(self._cols[0]) < BLOCK:
            return
        block = self._block(self._cols)
        if block is None:
            return
        self._blocks.append(block)
        self._packed_n += block[0]
        self._cols = [array(code) for code in self.CODES]

    def _columns(self) -> list[Column]:
        """Every entry's columns, unpacked (a temporary: not kept)."""
        if not self._blocks:
            return self._cols
        cols: list[Column] = [array(code) for code in self.CODES]
        for block in self._blocks:
            for i, col in enumerate(_unpack(self.CODES, self.DELTA, block)):
                cols[i].extend(col)
        for i, tail in enumerate(self._cols):
            if isinstance(tail, list):
                cols[i] = [*cols[i], *tail]
            else:
                cols[i].extend(tail)
        return cols

    def _set_columns(self, cols: list[Column]) -> None:
        """Replace the content with these columns, packing whole blocks."""
        self._blocks, self._packed_n = [], 0
        n = len(cols[0])
        start = 0
        while n - start >= BLOCK:
            block = self._block([c[start : start + BLOCK] for c in cols])
            if block is None:
                break
            self._blocks.append(block)
            self._packed_n += BLOCK
            start += BLOCK
        self._cols = [c[start:] for c in cols]

    def blocks(self) -> list[Block]:
        """The content as packed blocks (the tail packed on the fly).

        Raises:
            OverflowError: A value does not fit the packed form (beyond int64).
        """
        if not len(self._cols[0]):
            return list(self._blocks)
        tail = self._block(self._cols)
        if tail is None:
            raise OverflowError("log does not fit the packed form")
        return [*self._blocks, tail]

    def __len__(self) -> int:
        return self._packed_n + len(self._cols[0])

    def _cut(self, source: _Packed, t_ms: int) -> None:
        """Become ``source`` without the entries at or before ``t_ms``.

        Whole blocks are kept or dropped by their time range without unpacking;
        only a block straddling ``t_ms`` is unpacked, filtered and packed again.
        """
        blocks: list[Block] = []
        for block in source._blocks:
            if block[2] > t_ms:
                blocks.append(block)
            elif block[3] > t_ms:
                cols = _unpack(self.CODES, self.DELTA, block)
                mask = [t > t_ms for t in cols[0]]
                part = self._block([_compress(c, mask) for c in cols])
                if part is not None:
                    blocks.append(part)
        self._blocks = blocks
        self._packed_n = sum(b[0] for b in blocks)
        mask = [t > t_ms for t in source._cols[0]]
        self._cols = [_compress(c, mask) for c in source._cols]

    def _tail_index(self, index: int) -> int | None:
        """The tail position of item ``index`` (None when it lies in a packed block)."""
        n = len(self)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError("log index out of range")
        return i - self._packed_n if i >= self._packed_n else None


class SampleLog(_Packed, Sequence[Sample]):
    """Samples in arrival order, column-wise and packed (``append``, index, slice, iterate)."""

    __slots__ = ()
    # t_ms, run, fault, good, total, flags, mono (NaN when None)
    CODES: ClassVar[str] = "qbqqqbd"
    DELTA: ClassVar[tuple[bool, ...]] = (True, False, True, True, True, False, False)

    def __init__(self, samples: Iterable[Sample] = ()) -> None:
        super().__init__()
        for s in samples:
            self.append(s)

    def append(self, s: Sample) -> None:
        """Add a sample at the end."""
        t, run, fault, good, total, flags, mono = self._cols
        if s.quality == QUALITY_BAD:
            run_v = fault_v = good_v = total_v = 0
            flag = _BAD
        else:
            run_v, fault_v, good_v, total_v = s.run, s.fault, s.good, s.total
            flag = 0
        t.append(s.t_ms)
        run.append(run_v)
        try:
            fault.append(fault_v)
        except OverflowError:
            self._cols[2] = [*fault, fault_v]
        try:
            good.append(good_v)
        except OverflowError:
            self._cols[3] = [*good, good_v]
        try:
            total.append(total_v)
        except OverflowError:
            self._cols[4] = [*total, total_v]
        flags.append(flag | _SYNCED[s.synced] << 1)
        mono.append(math.nan if s.mono_s is None else s.mono_s)
        self._seal()

    @classmethod
    def _of(cls, cols: list[Column]) -> SampleLog:
        out = cls()
        out._set_columns(cols)
        return out

    def _clean(self, cols: Sequence[Column]) -> bool:
        unsynced = (_SYNCED[None] << 1, _SYNCED[False] << 1)
        return not any(
            (flag & 6) in unsynced and not math.isnan(mono)
            for flag, mono in zip(cols[5], cols[6], strict=True)
        )

    def after(self, t_ms: int) -> SampleLog:
        """The samples with ``t_ms`` after this one (their stored time), in order."""
        out = SampleLog()
        out._cut(self, t_ms)
        return out

    def select(self, keep: Iterable[bool]) -> SampleLog:
        """The samples whose ``keep`` flag is true (columns filtered, no sample rebuilt)."""
        mask = list(keep)
        return self._of([_compress(column, mask) for column in self._columns()])

    def times(self) -> list[int]:
        """Every sample's ``t_ms``, in order."""
        return list(self._columns()[0])

    def all_synced(self) -> bool:
        """Whether no sample has a monotonic time without a synchronised clock.

        Then clock correction leaves every time as it is (only unsynchronised samples
        with a monotonic time are moved), so ``times()`` are the corrected times.
        """
        return all(block[4] for block in self._blocks) and self._clean(self._cols)

    def rows(self) -> list[list[Any]]:
        """The state rows of :func:`encode_log`, straight from the columns."""
        out: list[list[Any]] = []
        last = 0
        for t, run, fault, good, total, flags, mono in zip(*self._columns(), strict=True):
            out.append(
                [t - last, run, fault, good, total, flags, None if math.isnan(mono) else mono]
            )
            last = t
        return out

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> SampleLog: ...

    def __getitem__(self, index: int | slice) -> Sample | SampleLog:
        if isinstance(index, slice):
            return self._of([c[index] for c in self._columns()])
        i = self._tail_index(index)
        c = self._cols if i is not None else self._columns()
        j = i if i is not None else (index if index >= 0 else index + len(self))
        return _sample(c[0][j], c[1][j], c[2][j], c[3][j], c[4][j], c[5][j], c[6][j])

    def __iter__(self) -> Iterator[Sample]:
        return map(_sample, *self._columns())


class PointLog(_Packed, Sequence[Point]):
    """Prepared points ``(t_ms, bad, run, fault, good, total)``, column-wise and packed."""

    __slots__ = ()
    CODES: ClassVar[str] = "qbbqqq"
    DELTA: ClassVar[tuple[bool, ...]] = (True, False, False, True, True, True)

    def __init__(self, points: Iterable[Point] = ()) -> None:
        super().__init__()
        for p in points:
            self.append(p)

    def append(self, p: Point) -> None:
        """Add a point at the end."""
        t, bad, run, fault, good, total = self._cols
        t.append(p[0])
        bad.append(p[1])
        run.append(p[2])
        try:
            fault.append(p[3])
        except OverflowError:
            self._cols[3] = [*fault, p[3]]
        try:
            good.append(p[4])
        except OverflowError:
            self._cols[4] = [*good, p[4]]
        try:
            total.append(p[5])
        except OverflowError:
            self._cols[5] = [*total, p[5]]
        self._seal()

    @classmethod
    def _of(cls, cols: list[Column]) -> PointLog:
        out = cls()
        out._set_columns(cols)
        return out

    def after(self, t_ms: int) -> PointLog:
        """The points with a time after ``t_ms`` (whole blocks kept or dropped by time)."""
        out = PointLog()
        out._cut(self, t_ms)
        return out

    @overload
    def __getitem__(self, index: int) -> Point: ...

    @overload
    def __getitem__(self, index: slice) -> PointLog: ...

    def __getitem__(self, index: int | slice) -> Point | PointLog:
        if isinstance(index, slice):
            return self._of([c[index] for c in self._columns()])
        i = self._tail_index(index)
        c = self._cols if i is not None else self._columns()
        j = i if i is not None else (index if index >= 0 else index + len(self))
        return (c[0][j], bool(c[1][j]), c[2][j], c[3][j], c[4][j], c[5][j])

    def __iter__(self) -> Iterator[Point]:
        c = self._columns()
        return zip(c[0], map(bool, c[1]), c[2], c[3], c[4], c[5], strict=True)


def _sample(t: int, run: int, fault: int, good: int, total: int, flags: int, mono: float) -> Sample:
    bad = bool(flags & _BAD)
    return Sample.at_ms(
        t,
        run=0 if bad else run,
        fault=0 if bad else fault,
        good=0 if bad else good,
        total=0 if bad else total,
        quality=QUALITY_BAD if bad else QUALITY_GOOD,
        mono_s=None if math.isnan(mono) else mono,
        synced=_SYNCED_BACK[(flags >> 1) & 3],
    )


def pack_log(log: SampleLog) -> dict[str, Any] | None:
    """The log as packed blocks ``{"blocks": [{"n": count, "z": base64}, ...]}``, or None.

    None when a value does not fit the packed form (beyond int64): callers then
    keep the rows of :func:`encode_log`.
    """
    try:
        blocks = log.blocks()
    except OverflowError:
        return None
    return {"blocks": [{"n": b[0], "z": base64.b64encode(b[1]).decode("ascii")} for b in blocks]}


def unpack_log(packed: dict[str, Any]) -> SampleLog:
    """The log of :func:`pack_log`.

    Raises:
        ValueError: The packed form is malformed.
    """
    cols: list[Column] = [array(code) for code in SampleLog.CODES]
    try:
        blocks = [
            (int(b["n"]), base64.b64decode(b["z"], validate=True), 0, 0, False)
            for b in packed["blocks"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed packed sample log: {exc}") from None
    for block in blocks:
        for i, col in enumerate(_unpack(SampleLog.CODES, SampleLog.DELTA, block)):
            cols[i].extend(col)
    if any(not 0 <= f <= 5 for f in cols[5]):
        raise ValueError("malformed packed sample log: bad flags")
    return SampleLog._of(cols)


def encode_log(samples: Iterable[Sample]) -> list[list[Any]]:
    """Rows of the samples, in order (see the module docstring)."""
    if isinstance(samples, SampleLog):
        return samples.rows()
    rows: list[list[Any]] = []
    last = 0
    for s in samples:
        t = s.t_ms
        flags = int(s.is_bad) | _SYNCED[s.synced] << 1
        if s.is_bad:
            rows.append([t - last, 0, 0, 0, 0, flags, s.mono_s])
        else:
            rows.append([t - last, s.run, s.fault, s.good, s.total, flags, s.mono_s])
        last = t
    return rows


def decode_log(rows: Sequence[Any] | dict[str, Any]) -> SampleLog:
    """Samples from :func:`pack_log`, :func:`encode_log` rows, or state version 2 objects.

    Raises:
        ValueError: A row is malformed.
    """
    if isinstance(rows, dict):
        return unpack_log(rows)
    out = SampleLog()
    last = 0
    for row in rows:
        if isinstance(row, dict):  # state version 2: one vector-format object per sample
            out.append(sample_from_json(row))
            continue
        if not isinstance(row, list) or len(row) != 7:
            raise ValueError(f"malformed sample row {row!r}")
        dt, run, fault, good, total, flags, mono = row
        if not isinstance(flags, int) or not 0 <= flags <= 5:
            raise ValueError(f"malformed sample row {row!r}")
        t = last + int(dt)
        last = t
        mono_value = math.nan if mono is None else float(mono)
        out.append(_sample(t, int(run), int(fault), int(good), int(total), flags, mono_value))
    return out
