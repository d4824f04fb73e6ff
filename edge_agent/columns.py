"""A poll's good readings kept as columns: tag names and values, no object per value.

A Modbus poll of 125 registers that all decode is 125 good readings that share their
device, their read time and their quality. Building a :class:`~edge_agent.model.Reading`
for each costs about 0.1 us, and every consumer that only needs tags and values (the
latest-value view, telemetry of ``every`` tags, frame storage) pays again to take them
apart. :class:`ColumnPoll` carries such a poll as :class:`Column` s instead (one per
block read: the block's tag names, its values in the same order, its read times), and
is still a ``Sequence[Reading]``: code that iterates or indexes it gets the very
readings the driver would have built (``quality`` good, ``reason`` "", ``source_ts``
None), made on access. Consumers that know the type use the columns directly.

Invariants (the driver guarantees them, nothing here checks them per value): a
column's tags are unique and as many as its values; the columns of one poll hold
different tags; nothing is empty. Immutable by convention: do not mutate the lists
after handing the poll on (the dispatcher passes it to several consumers by
reference). Pure code, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain, repeat
from typing import NamedTuple, overload

from edge_agent.model import Quality, Reading, Value

__all__ = ["Column", "ColumnPoll"]

_GOOD = Quality.GOOD
_new = tuple.__new__
# Readings are built positionally below: fail at import, not with shifted fields.
if Reading._fields != (
    "device",
    "tag",
    "value",
    "ts",
    "mono",
    "quality",
    "reason",
    "source_ts",
):  # pragma: no cover
    raise ImportError(f"edge_agent.columns expects another Reading layout: {Reading._fields}")


class Column(NamedTuple):
    """Good values of one device read at one time (one block read).

    Attributes:
        tags: Tag names, unique; the same tuple object on every poll of the same block
            (consumers may cache per-layout work by its identity).
        values: The decoded values, ``values[i]`` belonging to ``tags[i]``.
        ts: Wall-clock UNIX time the response arrived.
        mono: ``time.monotonic()`` when it arrived.
    """

    tags: tuple[str, ...]
    values: Sequence[Value]
    ts: float
    mono: float


def _readings(device: str, column: Column) -> Iterator[Reading]:
    """The column's readings, built in C (``map`` over ``zip``): no Python frame per value."""
    tags, values, ts, mono = column
    return map(
        _new,
        repeat(Reading),
        zip(
            repeat(device),
            tags,
            values,
            repeat(ts),
            repeat(mono),
            repeat(_GOOD),
            repeat(""),
            repeat(None),
        ),
    )


class ColumnPoll(Sequence[Reading]):
    """One device's poll of good readings as columns (see the module docstring).

    Args:
        device: The device name.
        columns: One column per block read, in read order.
    """

    __slots__ = ("_len", "columns", "device")

    def __init__(self, device: str, columns: Sequence[Column]) -> None:
        self.device = device
        self.columns = tuple(columns)
        self._len = sum(len(c.tags) for c in self.columns)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Reading]:
        device = self.device
        if len(self.columns) == 1:
            return _readings(device, self.columns[0])
        return chain.from_iterable(_readings(device, c) for c in self.columns)

    @overload
    def __getitem__(self, index: int) -> Reading: ...

    @overload
    def __getitem__(self, index: slice) -> list[Reading]: ...

    def __getitem__(self, index: int | slice) -> Reading | list[Reading]:
        if isinstance(index, slice):
            return list(self)[index]
        i = index + self._len if index < 0 else index
        if not 0 <= i < self._len:
            raise IndexError("ColumnPoll index out of range")
        for tags, values, ts, mono in self.columns:
            if i < len(tags):
                return _new(Reading, (self.device, tags[i], values[i], ts, mono, _GOOD, "", None))
            i -= len(tags)
        raise IndexError("ColumnPoll index out of range")  # pragma: no cover - sizes agree

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same readings (a list of them included)."""
        if isinstance(other, ColumnPoll):
            return self.device == other.device and list(self) == list(other)
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ColumnPoll({self.device!r}, {len(self.columns)} columns, {self._len} readings)"

    @property
    def mono(self) -> float:
        """The latest monotonic read time of the poll."""
        return max(c.mono for c in self.columns)
