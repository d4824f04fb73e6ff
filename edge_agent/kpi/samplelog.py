"""The calculator's retained samples, stored compactly in memory and in its persisted state.

:class:`~edge_agent.kpi.calculator.MachineCalculator` keeps every sample of its
revision horizon (one hour by default), and the points it fed its sweep, so that
a late sample can still be placed exactly. That retention is what grows after a
start, levelling off once the horizon is full. Measured for one machine polled
every 200 ms (18,000 samples in the horizon): as Python objects 195 bytes per
sample plus 96 per fed point (5.3 MB per machine); as JSON objects in the state
rewritten at every report, 117 bytes per sample (2.1 MB per machine per report).

This module stores the same information column-wise:

* :class:`SampleLog` (a ``Sequence[Sample]``) and :class:`PointLog` (a
  ``Sequence[Point]``) keep each field in an ``array`` (about 43 and 34 bytes per
  entry); items are rebuilt on access, equal to what was stored (a sample's time
  is its integer millisecond ``t_ms``, the only time the calculator reads);
* :func:`encode_log` writes the state's log as rows
  ``[dt_ms, run, fault, good, total, flags, mono_s]`` (about 39 bytes):
  ``dt_ms`` is the time since the previous row (the first row: epoch ms), ``flags``
  bit 0 is quality bad, bits 1-2 ``synced`` (0 unknown, 1 false, 2 true), bit 3 is
  unused, and a bad sample stores zeros for its untrusted fields, as the object
  form of state version 2 restored them;
* :func:`pack_log` (state version 4) writes the same columns as one zlib-compressed
  binary block: times, fault and counters as differences to the previous sample
  (int64), the monotonic time as the XOR of its IEEE 754 bits with the previous
  one's; steady polling makes those small and repetitive, so a sample costs about
  3 bytes of state instead of 39 (an 1 h horizon of 5 Hz samples: 830 KiB -> about
  50 KiB). Every value comes back bit for bit. :func:`decode_log` reads all three forms.

Nothing is dropped or rounded: results after a restore or a replay are the same
as with plain lists. Pure code, no I/O.
"""

from __future__ import annotations

import base64
import itertools
import math
import sys
import zlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from edge_agent.kpi.prepare import Point
from edge_agent.kpi.sample import QUALITY_BAD, QUALITY_GOOD, Sample, sample_from_json

_SYNCED = {None: 0, False: 1, True: 2}
_SYNCED_BACK: tuple[bool | None, ...] = (None, False, True)
_BAD = 1

Column = array | list  # type: ignore[type-arg]


def _compress(column: Column, mask: list[bool]) -> Column:
    kept = itertools.compress(column, mask)
    if isinstance(column, array):
        return array(column.typecode, kept)
    return list(kept)


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


class SampleLog(Sequence[Sample]):
    """Samples in arrival order, column-wise (``append``, index, slice, iterate)."""

    __slots__ = ("_cols",)

    def __init__(self, samples: Iterable[Sample] = ()) -> None:
        # t_ms, run, fault, good, total, flags, mono (NaN when None)
        self._cols: list[Column] = [
            array("q"),
            array("b"),
            array("q"),
            array("q"),
            array("q"),
            array("b"),
            array("d"),
        ]
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

    def select(self, keep: Iterable[bool]) -> SampleLog:
        """The samples whose ``keep`` flag is true (columns filtered, no sample rebuilt)."""
        mask = list(keep)
        out = SampleLog()
        out._cols = [_compress(column, mask) for column in self._cols]
        return out

    def times(self) -> list[int]:
        """Every sample's ``t_ms``, in order."""
        return list(self._cols[0])

    def all_synced(self) -> bool:
        """Whether no sample has a monotonic time without a synchronised clock.

        Then clock correction leaves every time as it is (only unsynchronised samples
        with a monotonic time are moved), so ``times()`` are the corrected times.
        """
        unsynced = (_SYNCED[None] << 1, _SYNCED[False] << 1)
        return not any(
            (flag & 6) in unsynced and not math.isnan(mono)
            for flag, mono in zip(self._cols[5], self._cols[6], strict=True)
        )

    def rows(self) -> list[list[Any]]:
        """The state rows of :func:`encode_log`, straight from the columns."""
        out: list[list[Any]] = []
        last = 0
        for t, run, fault, good, total, flags, mono in zip(*self._cols, strict=True):
            out.append(
                [t - last, run, fault, good, total, flags, None if math.isnan(mono) else mono]
            )
            last = t
        return out

    def __len__(self) -> int:
        return len(self._cols[0])

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> SampleLog: ...

    def __getitem__(self, index: int | slice) -> Sample | SampleLog:
        if isinstance(index, slice):
            return SampleLog(self[i] for i in range(*index.indices(len(self))))
        c = self._cols
        return _sample(
            c[0][index],
            c[1][index],
            c[2][index],
            c[3][index],
            c[4][index],
            c[5][index],
            c[6][index],
        )

    def __iter__(self) -> Iterator[Sample]:
        return map(_sample, *self._cols)


class PointLog(Sequence[Point]):
    """Prepared points ``(t_ms, bad, run, fault, good, total)``, column-wise."""

    __slots__ = ("_cols",)

    def __init__(self, points: Iterable[Point] = ()) -> None:
        self._cols: list[Column] = [
            array("q"),
            array("b"),
            array("b"),
            array("q"),
            array("q"),
            array("q"),
        ]
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

    def after(self, t_ms: int) -> PointLog:
        """The points with a time after ``t_ms`` (columns filtered, no point rebuilt)."""
        out = PointLog()
        mask = [t > t_ms for t in self._cols[0]]
        out._cols = [_compress(column, mask) for column in self._cols]
        return out

    def __len__(self) -> int:
        return len(self._cols[0])

    @overload
    def __getitem__(self, index: int) -> Point: ...

    @overload
    def __getitem__(self, index: slice) -> PointLog: ...

    def __getitem__(self, index: int | slice) -> Point | PointLog:
        if isinstance(index, slice):
            return PointLog(self[i] for i in range(*index.indices(len(self))))
        c = self._cols
        return (c[0][index], bool(c[1][index]), c[2][index], c[3][index], c[4][index], c[5][index])

    def __iter__(self) -> Iterator[Point]:
        c = self._cols
        return zip(c[0], map(bool, c[1]), c[2], c[3], c[4], c[5], strict=True)


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


_PACK_CODES = "qbqqqbQ"  # t, run, fault, good, total, flags, mono bits
_DELTA = (True, False, True, True, True, False, False)
_INT64 = 1 << 63


def _le(column: array) -> bytes:  # type: ignore[type-arg]
    if sys.byteorder == "big":
        column = array(column.typecode, column)
        column.byteswap()
    return column.tobytes()


def pack_log(log: SampleLog) -> dict[str, Any] | None:
    """The log as one compressed block ``{"n": count, "z": base64}``, or None.

    None when a counter does not fit the packed form (beyond int64): callers then
    keep the rows of :func:`encode_log`.
    """
    cols = [c for c in log._cols if isinstance(c, array)]
    if len(cols) != len(log._cols):
        return None
    n = len(cols[0])
    parts: list[bytes] = []
    for code, delta, col in zip(_PACK_CODES, _DELTA, cols, strict=True):
        out: array  # type: ignore[type-arg]
        if code == "Q":  # monotonic time: XOR of the float bits with the previous one
            bits = array("Q")
            bits.frombytes(col.tobytes())
            out = array("Q", [bits[0]] if n else [])
            out.extend(a ^ b for a, b in zip(bits[1:], bits, strict=False))
        elif delta:
            values = list(col)
            diffs = [b - a for a, b in zip([0, *values], values, strict=False)]
            if any(not -_INT64 <= d < _INT64 for d in diffs):
                return None
            out = array("q", diffs)
        else:
            out = col
        parts.append(_le(out))
    blob = zlib.compress(b"".join(parts), 6)
    return {"n": n, "z": base64.b64encode(blob).decode("ascii")}


def unpack_log(packed: dict[str, Any]) -> SampleLog:
    """The log of :func:`pack_log`.

    Raises:
        ValueError: The block is malformed.
    """
    try:
        n = int(packed["n"])
        raw = zlib.decompress(base64.b64decode(packed["z"], validate=True))
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise ValueError(f"malformed packed sample log: {exc}") from None
    sizes = [array(code).itemsize * n for code in _PACK_CODES]
    if n < 0 or len(raw) != sum(sizes):
        raise ValueError("malformed packed sample log: wrong length")
    cols: list[Column] = []
    pos = 0
    for code, delta, size in zip(_PACK_CODES, _DELTA, sizes, strict=True):
        col: array = array(code)  # type: ignore[type-arg]
        col.frombytes(raw[pos : pos + size])
        pos += size
        if sys.byteorder == "big":
            col.byteswap()
        if code == "Q":
            bits = array("Q", itertools.accumulate(col, lambda a, b: a ^ b))
            col = array("d")
            col.frombytes(bits.tobytes())
        elif delta:
            values = list(itertools.accumulate(col))
            try:
                col = array("q", values)
            except OverflowError:
                raise ValueError("malformed packed sample log: value out of range") from None
        cols.append(col)
    flags = cols[5]
    if any(not 0 <= f <= 5 for f in flags):
        raise ValueError("malformed packed sample log: bad flags")
    out = SampleLog()
    out._cols = cols
    return out


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
