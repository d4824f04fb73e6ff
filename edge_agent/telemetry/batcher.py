"""Per-device batching of telemetry into one compact message per publish interval.

A :class:`DeviceBatch` collects what the per-tag state machines of
:mod:`edge_agent.telemetry.engine` decided to publish for one device: the
:class:`~edge_agent.model.Reading` objects themselves, kept by reference, and
closed aggregate windows. A device whose published tags are all ``every`` hands
over each poll whole (:meth:`DeviceBatch.add_poll`: nothing per reading; a
:class:`~edge_agent.columns.ColumnPoll` is kept as its columns, its message text
formatted from a per-block template); other readings arrive one by one
(:meth:`DeviceBatch.add`). On :meth:`DeviceBatch.build`
it encodes them into the JSON text of the ``data`` part of one telemetry message
and empties itself. It does no I/O and knows nothing about the MQTT envelope
(``v``, ``kind``, ``agent``, ``seq``, ``ts`` belong to the pipeline's outbox).

The ``data`` format (validated by ``schemas/telemetry.schema.json``)::

    {"device": "press1",
     "t0": 1764190800,
     "samples": [[512, {"temp": 71.5, "state": "run"}],
                 [1512, {"temp": null}, {"temp": ["bad", "timeout"]}]],
     "aggregates": {"vib": [{"start": 1764190740.0, "end": 1764190800.0,
                             "count": 600, "good_ratio": 1.0, "last": 0.31,
                             "min": 0.1, "max": 0.6, "mean": 0.29}]}}

* ``t0``: whole UNIX seconds (UTC). Present only with ``samples``.
* ``samples``: snapshots in reading order. A snapshot is ``[dt_ms, values]``
  or ``[dt_ms, values, issues]``: the reading time in integer milliseconds
  relative to ``t0`` (may be negative after a backwards clock step), the values
  read at that time by tag, and, only when some of them are not good, their
  quality by tag (``"stale"``, or ``["bad", "timeout"]`` with the reason). A
  tag absent from ``issues`` is good. A device's poll is one snapshot per
  block read time, so a value costs its tag name and the value alone; a tag
  appears at most once per snapshot.
* Non-finite floats are sent as the strings ``"NaN"``, ``"Infinity"``,
  ``"-Infinity"`` so the payload is strict JSON.
* ``samples`` and ``aggregates`` are omitted when empty; aggregate windows are
  per tag in time order.
* ``clock_unsynced: true`` when the agent knew its wall clock was not
  synchronised while the readings were taken.
* ``units``: the engineering units of the device's published tags that have one
  (``{"temp": "°C"}``, from the tags' ``unit`` key), in the device's first message
  after the engine starts (agent start, and every reload: the only way units
  change) and again at least every :data:`UNITS_EVERY_S`, so a consumer that
  subscribed later, or lost that message to eviction, learns them within the hour.

Guarantees: every reading handed to the batch for a published tag appears in
exactly one message; ``build`` returns ``None`` when nothing is pending (no
empty messages).
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from edge_agent.columns import Column, ColumnPoll
from edge_agent.model import Quality, Reading, Value

__all__ = [
    "UNITS_EVERY_S",
    "DeviceBatch",
    "Recipe",
    "TelemetryMessage",
    "encode_value",
    "rebuild_text",
]

#: A device's ``units`` are repeated in its first message after this long (seconds).
UNITS_EVERY_S = 3600.0

_GOOD = Quality.GOOD
_QUALITY = operator.attrgetter("quality")
_TS = operator.attrgetter("ts")
_ONLY_GOOD = {_GOOD}
#: Column layouts a batch remembers (a device has one per block; re-plans add more).
_LAYOUTS_MAX = 64


@dataclass(frozen=True, slots=True)
class Recipe:
    """What a samples-only message's text adds to its values: ``t0``, units, clock flag."""

    t0: int
    units: dict[str, str] | None = None
    clock_unsynced: bool = False


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TelemetryMessage:
    """One device's telemetry for one publish interval.

    Attributes:
        device: Device name (``devices.<name>``).
        ts: Time the message was built (the ``now`` given to the engine).
        values: Number of entries carried (samples plus aggregate windows).
        text: The ``data`` part as compact, strict JSON text (see the module
            docstring), encoded once here; the pipeline stores it as it is and
            wraps it in its envelope.
    """

    device: str
    ts: float
    values: int
    text: str
    #: How to build ``text`` again from the device's raw values (samples only, no
    #: aggregates), or None; see :func:`rebuild_text`.
    recipe: Recipe | None = None

    @property
    def data(self) -> dict[str, Any]:
        """The ``data`` part decoded (a new dict each time; for tests and tools)."""
        return cast(dict[str, Any], json.loads(self.text))


def _nonfinite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def encode_value(value: Value) -> Any:
    """Make a reading value strict-JSON safe (non-finite floats become strings)."""
    if type(value) is float:
        return value if value - value == 0.0 else _nonfinite(value)
    if type(value) is list:
        return [encode_value(item) for item in value]
    return value


# check_circular=False: the data part is a tree built here; the check costs a dict
# insert and delete per sample array, about a quarter of the encoding time.
_ENCODE = json.JSONEncoder(
    separators=(",", ":"), allow_nan=False, ensure_ascii=False, check_circular=False
).encode


class _Snapshot:
    """A poll already reduced to its values by tag (all good, one reading time)."""

    __slots__ = ("ts", "values")

    def __init__(self, ts: float, values: dict[str, Any]) -> None:
        self.ts = ts
        self.values = values

    def __len__(self) -> int:
        return len(self.values)


class _Columns:
    """Columns of a :class:`ColumnPoll` read at one time: one snapshot, kept as columns."""

    __slots__ = ("columns", "ts")

    def __init__(self, columns: list[Column]) -> None:
        self.ts = columns[0].ts
        self.columns = columns

    def __len__(self) -> int:
        return sum(len(c.tags) for c in self.columns)


_Chunk = Sequence[Reading] | _Snapshot | _Columns


def _first_ts(chunk: _Chunk) -> float:
    return chunk.ts if isinstance(chunk, _Snapshot | _Columns) else chunk[0].ts


def _encode_snapshot(snapshot: list[Any]) -> str:
    """One ``samples`` entry as JSON text (non-finite floats as strings, see above)."""
    try:
        return _ENCODE(snapshot)
    except ValueError:  # NaN or +-inf in a value: rare, so checked only here
        snapshot[1] = {tag: encode_value(v) for tag, v in snapshot[1].items()}
        return _ENCODE(snapshot)


#: Value types a column template formats with ``%r`` exactly as the JSON encoder would
#: write them (``bool`` is not among them: ``%r`` gives ``True``).
_PLAIN_NUMBERS = frozenset({int, float})


class _Layout:
    """What a batch knows about one column layout (one block's ``tags`` tuple)."""

    __slots__ = ("fits", "tags", "template")

    def __init__(self, tags: tuple[str, ...], sample_tags: frozenset[str]) -> None:
        self.tags = tags  # kept: the cache is keyed by id(tags)
        # Each tag once and only sample tags: otherwise the poll is kept as readings.
        self.fits = len(set(tags)) == len(tags) and sample_tags.issuperset(tags)
        # ``"t1":%r,"t2":%r``: the snapshot's members for plain finite numbers.
        self.template = ",".join(_ENCODE(t).replace("%", "%%") + ":%r" for t in tags)


def _members(layout: _Layout, values: Sequence[Any]) -> str | None:
    """The JSON members ``"tag":value,...`` of a column, or None unless all plain finite."""
    kinds = set(map(type, values))
    if not kinds <= _PLAIN_NUMBERS:
        return None
    if float in kinds:
        total = sum(values)  # NaN or an infinity makes the sum non-finite
        if total - total != 0:
            return None
    return layout.template % tuple(values)


def _text(
    quoted: str,
    t0: int,
    samples: list[str],
    aggregates: dict[str, list[dict[str, Any]]],
    units: dict[str, str] | None,
    clock_unsynced: bool,
) -> str:
    """The data part's JSON text from its encoded samples and the other members."""
    head = '{"device":' + quoted
    if samples:
        head += f',"t0":{t0},"samples":[{",".join(samples)}]'
    rest: dict[str, Any] = {}
    if aggregates:
        rest["aggregates"] = aggregates
    if units:
        rest["units"] = units
    if clock_unsynced:
        rest["clock_unsynced"] = True
    tail = _ENCODE(rest) if rest else "{}"
    return head + ("}" if tail == "{}" else "," + tail[1:])


def rebuild_text(device: str, readings: Sequence[Reading], recipe: Recipe) -> str:
    """The text of a samples-only message from the readings it carried (arrival order).

    The readings are those stored for the message (its device's raw values between two
    cuts, see :mod:`edge_agent.buffer.telerefs`). Snapshots are cut as :meth:`DeviceBatch.build`
    cuts them: a new one where the reading time changes or a tag repeats. The text is
    the one the message had, byte for byte, unless two polls of the device carried the
    same reading time (then one snapshot holds both here, with the same values and time).
    """
    batch = DeviceBatch(device, {r.tag for r in readings})
    start = 0
    for i in range(1, len(readings) + 1):
        if i == len(readings) or readings[i].ts != readings[start].ts:
            batch.add_poll(readings[start:i])
            start = i
    samples, _ = batch._samples(batch._chunks, recipe.t0)
    return _text(batch._quoted, recipe.t0, samples, {}, recipe.units, recipe.clock_unsynced)


class DeviceBatch:
    """What one device has to publish since the last message.

    Args:
        device: Device name.
        sample_tags: Tags whose readings are published as samples (``every``
            and ``change``); readings of other tags given to :meth:`add_poll`
            are left out.
        units: Engineering units of the published tags that have one (``units``).
    """

    __slots__ = (
        "_aggregates",
        "_chunks",
        "_layouts",
        "_open",
        "_quoted",
        "_tags",
        "_units",
        "_units_at",
        "device",
    )

    def __init__(
        self, device: str, sample_tags: Iterable[str], units: Mapping[str, str] | None = None
    ) -> None:
        self.device = device
        self._quoted = _ENCODE(device)
        self._tags = frozenset(sample_tags)
        self._units = dict(sorted((units or {}).items()))
        self._units_at: float | None = None  # when the units were last sent
        # Readings in arrival order, as the sequences they came in: whole polls
        # (add_poll) and lists of single readings (add).
        self._chunks: list[_Chunk] = []
        self._open: list[Reading] | None = None  # the chunk single readings go to
        self._aggregates: dict[str, list[dict[str, Any]]] = {}
        self._layouts: dict[int, _Layout] = {}  # by id() of a column's tags tuple

    @property
    def tags(self) -> frozenset[str]:
        """The sample tags (``every`` and ``change``)."""
        return self._tags

    def add(self, reading: Reading) -> None:
        """Queue one reading of a sample tag for publication."""
        chunk = self._open
        if chunk is None:
            chunk = self._open = []
            self._chunks.append(chunk)
        chunk.append(reading)

    def add_poll(self, readings: Sequence[Reading]) -> None:
        """Queue a poll's readings (kept by reference: do not mutate it afterwards).

        Readings of tags that are not sample tags are left out. A poll of good
        readings of sample tags taken at one time (the common case) is turned into
        its snapshot here, with one comprehension: the values are kept, the
        readings can go (memory, with a publish interval of several polls).
        """
        if not readings:
            return
        self._open = None
        if type(readings) is ColumnPoll:
            self._add_columns(readings)
            return
        ts = readings[0].ts
        if set(map(_QUALITY, readings)) == _ONLY_GOOD and set(map(_TS, readings)) == {ts}:
            values = {r.tag: r.value for r in readings}
            # Each tag once, and only sample tags: otherwise kept as readings.
            if len(values) == len(readings) and values.keys() <= self._tags:
                self._chunks.append(_Snapshot(ts, values))
                return
        self._chunks.append(readings)

    def _layout(self, tags: tuple[str, ...]) -> _Layout:
        layout = self._layouts.get(id(tags))
        if layout is None or layout.tags is not tags:
            if len(self._layouts) >= _LAYOUTS_MAX:
                self._layouts.clear()  # blocks were re-planned many times: start afresh
            layout = self._layouts[id(tags)] = _Layout(tags, self._tags)
        return layout

    def _add_columns(self, poll: ColumnPoll) -> None:
        """A column poll: kept as columns (one snapshot per read time), nothing per value.

        The same snapshots as its readings would give: consecutive columns read at
        the same time share one. A poll with a tag that is not a sample tag is kept
        as readings (filtered when the message is built).
        """
        columns = poll.columns
        if not all(self._layout(c.tags).fits for c in columns):
            self._chunks.append(list(poll))
            return
        group = [columns[0]]
        for column in columns[1:]:
            if column.ts == group[0].ts:
                group.append(column)
            else:
                self._chunks.append(_Columns(group))
                group = [column]
        self._chunks.append(_Columns(group))

    def add_aggregate(self, tag: str, summary: dict[str, Any]) -> None:
        """Queue one closed aggregate window of ``tag``."""
        self._aggregates.setdefault(tag, []).append(summary)

    @property
    def pending_values(self) -> int:
        """Readings plus aggregate windows waiting for the next message.

        An upper bound: readings of non-sample tags in a whole poll are counted too.
        """
        return sum(map(len, self._chunks)) + sum(map(len, self._aggregates.values()))

    def build(self, now: float, *, clock_unsynced: bool = False) -> TelemetryMessage | None:
        """Encode and remove everything pending; ``None`` when nothing is.

        The text is put together from the JSON of each snapshot; column snapshots of
        plain finite numbers are formatted from their layout's template (``%r`` of an
        ``int`` or ``float`` is what the JSON encoder writes), the others encoded.

        Args:
            now: The message's build time.
            clock_unsynced: Add ``"clock_unsynced": true`` to the data part.
        """
        chunks, aggregates = self._chunks, self._aggregates
        if not chunks and not aggregates:
            return None
        self._chunks, self._open, self._aggregates = [], None, {}
        t0 = math.floor(min(map(_first_ts, chunks))) if chunks else 0
        samples, count = self._samples(chunks, t0) if chunks else ([], 0)
        count += sum(map(len, aggregates.values()))
        if not count:
            return None  # only readings of tags this batch does not publish
        units: dict[str, str] | None = None
        if self._units and (
            self._units_at is None or not 0 <= now - self._units_at < UNITS_EVERY_S
        ):
            units = self._units
            self._units_at = now
        text = _text(self._quoted, t0, samples, aggregates, units, clock_unsynced)
        recipe = None if aggregates or not samples else Recipe(t0, units, clock_unsynced)
        return TelemetryMessage(device=self.device, ts=now, values=count, text=text, recipe=recipe)

    def _samples(self, chunks: list[_Chunk], t0: int) -> tuple[list[str], int]:
        """The ``samples`` entries as JSON texts, and how many values they carry."""
        out: list[str] = []
        count = 0
        for chunk in chunks:
            if isinstance(chunk, _Columns):
                dt = round((chunk.ts - t0) * 1000.0)
                members = [_members(self._layout(c.tags), c.values) for c in chunk.columns]
                if None in members:
                    values: dict[str, Any] = {}
                    for c in chunk.columns:
                        values.update(zip(c.tags, c.values, strict=True))
                    out.append(_encode_snapshot([dt, values]))
                else:
                    out.append(f"[{dt},{{{','.join(members)}}}]")  # type: ignore[arg-type]
                count += len(chunk)
            elif isinstance(chunk, _Snapshot):
                out.append(_encode_snapshot([round((chunk.ts - t0) * 1000.0), chunk.values]))
                count += len(chunk)
            else:
                for snapshot in self._snapshots(chunk, t0):
                    out.append(_encode_snapshot(snapshot))
                    count += len(snapshot[1])
        return out, count

    def _snapshots(self, chunk: Sequence[Reading], t0: int) -> list[list[Any]]:
        """The snapshots of a chunk of readings (a poll kept as readings, or single ones).

        A new snapshot starts when the reading time changes or the tag is already in
        the current one; readings of tags that are not sample tags are left out.
        """
        out: list[list[Any]] = []
        tags = self._tags
        good = _GOOD
        current: dict[str, Any] = {}
        issues: dict[str, Any] = {}
        last_ts: float | None = None
        for r in chunk:
            tag = r.tag
            if tag not in tags:
                continue
            if r.ts != last_ts or tag in current:
                last_ts = r.ts
                current, issues = {}, {}
                out.append([round((last_ts - t0) * 1000.0), current, issues])
            current[tag] = r.value
            if r.quality is not good:
                issues[tag] = [r.quality.value, r.reason] if r.reason else r.quality.value
        for snapshot in out:
            if not snapshot[2]:
                del snapshot[2]
        return out
