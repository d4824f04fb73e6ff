"""Telemetry engine: per-tag publishing state machines and the publish clock.

:class:`TelemetryEngine` takes readings (:meth:`~TelemetryEngine.ingest`) and,
when asked with the current time (:meth:`~TelemetryEngine.due`), returns one
:class:`~edge_agent.telemetry.batcher.TelemetryMessage` per device that has
something to say, at most once per publish interval (intervals aligned to
the UNIX epoch). It is pure: no I/O, no clock reads, no threads; every time
it uses comes from reading timestamps or the ``now`` argument.

Per mode (see :class:`~edge_agent.telemetry.policy.PublishMode`):

* ``every``: each reading, whatever its quality, is published once.
* ``change``: a reading is published when it is the tag's first, when its
  quality differs from the last published one, when its type differs, when a
  numeric value differs from the last published value by *more* than the
  deadband (absolute, or percent of ``abs(last)``), when a non-numeric value
  (string, bool, list) differs at all, or as a heartbeat when ``heartbeat_s``
  > 0 and at least that long (reading time) passed since the last
  publication. NaN equals NaN here; a backwards clock step re-arms the
  heartbeat immediately.
* ``aggregate``: readings fall into windows ``[k*L, (k+1)*L)`` of the epoch
  grid (``L = aggregate_s``): a reading at exactly a window end belongs to the
  *next* window. A window closes when a reading at or after its end arrives,
  or when ``due(now)`` is called with ``now >= end + aggregate_grace_s``. A
  reading for a window already closed is late when it is at most one window
  length (or the grace, if longer) older than the window that followed: it
  is dropped and counted, so a window is never reported twice. An older
  reading means the clock stepped back and starts a new window. Windows
  with no reading are not reported.

Guarantees: memory is bounded: once ``max_pending_readings`` readings of
``every``/``change`` tags were accepted since the last message (an upper
bound of the samples held), further batches are dropped whole and counted in
:attr:`TelemetryEngine.stats` until the next ``due``/``flush`` (so the bound
can be exceeded by one batch). Keep values/s x ``publish_interval_s`` well
below it: the default allows 20 s at 12,500 values/s. The hot path
(:meth:`TelemetryEngine.ingest`) allocates nothing per reading for ``every``
and ``change`` tags, it dispatches through precomputed per-tag callables; a
:class:`~edge_agent.columns.ColumnPoll` of a device whose published tags are all
``every`` goes to its batch as columns, without a reading per value.

Size: over 400 lines because the publish policies (every, change, deadband, aggregate)
share one per-tag state table in the per-value hot loop.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.columns import ColumnPoll
from edge_agent.model import Quality, Reading, Value
from edge_agent.telemetry.batcher import DeviceBatch, TelemetryMessage, encode_value
from edge_agent.telemetry.policy import PublishMode, PublishPolicy

__all__ = ["TelemetryEngine", "TelemetryStats"]

_GOOD = Quality.GOOD
_DEVICE = operator.attrgetter("device")
_INF = math.inf

Sink = Callable[[Reading], None]
_EMPTY: dict[str, Sink] = {}
_NO_SINKS: tuple[dict[str, Sink], dict[str, Sink]] = (_EMPTY, _EMPTY)


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetryStats:
    """Counters since the engine was created.

    Attributes:
        ingested: Readings accepted by :meth:`TelemetryEngine.ingest` (any tag).
        dropped_overflow: Readings of batches dropped because
            ``max_pending_readings`` was reached (``due`` was not called for too long).
        dropped_late: Aggregate readings that arrived after their window closed.
        messages: Messages returned by ``due``/``flush``.
        values: Samples plus aggregate windows carried by those messages.
    """

    ingested: int
    dropped_overflow: int
    dropped_late: int
    messages: int
    values: int


class _ChangeSlot:
    """State machine of one ``change`` tag: remembers the last published reading."""

    __slots__ = ("_abs", "_hb", "_out", "_pct", "_primed", "_q", "_ts", "_v")

    def __init__(self, policy: PublishPolicy, out: Sink) -> None:
        self._out = out
        self._abs = policy.deadband
        self._pct = None if policy.deadband_percent is None else policy.deadband_percent / 100.0
        self._hb = policy.heartbeat_s
        self._primed = False
        self._q: Quality = _GOOD
        self._v: Value = None
        self._ts = 0.0

    def push(self, r: Reading) -> None:
        """Publish ``r`` if it is a change, a quality change or a heartbeat."""
        value = r.value
        if self._primed and r.quality is self._q:
            last = self._v
            kind = type(value)
            if kind is type(last) and (value == last or self._within(value, last, kind)):
                hb = self._hb
                if not hb or 0.0 <= r.ts - self._ts < hb:
                    return
        self._primed = True
        self._q = r.quality
        self._v = value
        self._ts = r.ts
        self._out(r)

    def _within(self, value: Any, last: Any, kind: type) -> bool:
        """Whether a numeric value is inside the deadband (same type, not equal)."""
        if kind is not float and kind is not int:
            return False  # strings, bools, lists: any difference is a change
        delta = abs(value - last)
        if delta != delta:  # NaN involved: NaN -> NaN is no change, anything else is
            return bool(value != value and last != last)
        limit = self._abs if self._pct is None else abs(last) * self._pct
        return bool(delta <= limit)


class _AggregateSlot:
    """State machine of one ``aggregate`` tag: one open window of running statistics."""

    __slots__ = (
        "_batch",
        "_engine",
        "_late_limit",
        "_len",
        "_tag",
        "count",
        "end",
        "good",
        "has_last",
        "hi",
        "last",
        "lo",
        "n",
        "start",
        "total",
    )

    def __init__(
        self, tag: str, policy: PublishPolicy, batch: DeviceBatch, engine: TelemetryEngine
    ) -> None:
        self._tag = tag
        self._batch = batch
        self._engine = engine
        self._len = policy.aggregate_s
        # A reading older than the open (or last closed) window by up to one window
        # length is late (queued behind a stalled loop); older than that, the clock
        # stepped back.
        self._late_limit = max(engine.aggregate_grace_s, policy.aggregate_s)
        self.start = -_INF
        self.end = -_INF
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self.good = 0
        self.n = 0
        self.total = 0.0
        self.lo: float = _INF
        self.hi: float = -_INF
        self.last: Value = None
        self.has_last = False

    def push(self, r: Reading) -> None:
        """Add ``r`` to the open window, rolling the window first if needed."""
        ts = r.ts
        if not self.start <= ts < self.end and not self._roll(ts):
            return
        self.count += 1
        if r.quality is _GOOD:
            self.good += 1
            value = r.value
            self.last = value
            self.has_last = True
            kind = type(value)
            # bools are not numbers here; v - v == 0 excludes NaN and +-inf.
            if (kind is float or kind is int) and value - value == 0:  # type: ignore[operator]
                self.n += 1
                self.total += value  # type: ignore[operator]
                if value < self.lo:  # type: ignore[operator]
                    self.lo = value  # type: ignore[assignment]
                if value > self.hi:  # type: ignore[operator]
                    self.hi = value  # type: ignore[assignment]

    def _roll(self, ts: float) -> bool:
        """Open the window containing ``ts``; False when ``ts`` is a late reading."""
        if ts < self.start and self.start - ts <= self._late_limit:
            self._engine._late += 1
            return False
        if self.count:
            self.close(partial_end=None)
        length = self._len
        start = math.floor(ts / length) * length
        # Guard float rounding at grid points: the window must contain ts.
        if start > ts:
            start -= length
        elif ts >= start + length:
            start += length
        self.start = start
        self.end = start + length
        return True

    def close(self, *, partial_end: float | None) -> None:
        """Emit the open window (if it has readings) to the device batch.

        Args:
            partial_end: When closing before the window's end (shutdown), the
                time to report as its end; the summary is then marked partial.
        """
        count = self.count
        if not count:
            return
        summary: dict[str, Any] = {
            "start": self.start,
            "end": self.end if partial_end is None else partial_end,
            "count": count,
            "good_ratio": round(self.good / count, 6),
        }
        if self.has_last:
            summary["last"] = encode_value(self.last)
        if self.n:
            summary["min"] = self.lo
            summary["max"] = self.hi
            summary["mean"] = self.total / self.n
        if partial_end is not None:
            summary["partial"] = True
        self._batch.add_aggregate(self._tag, summary)
        self._reset()
        # The window is closed: an empty range makes any later reading for it late.
        self.start = self.end


class TelemetryEngine:
    """Turns readings into per-device telemetry messages according to per-tag policies.

    Args:
        policies: Policy per ``(device, tag)``; tags that are absent or have
            mode ``none`` are ignored by :meth:`ingest`.
        publish_interval_s: At most one message per device per interval; the
            intervals are aligned to the epoch grid.
        max_pending_readings: Bound on ``every``/``change`` readings accepted
            between two messages (see module docstring).
        aggregate_grace_s: How long after a window's end ``due`` waits for
            readings of that window before closing it (see module docstring).
        units: Engineering unit per device and tag (:func:`edge_agent.units.tag_units`):
            the published tags' units go in the device's messages (``units``, see
            :mod:`~edge_agent.telemetry.batcher`).

    Raises:
        ValueError: On a non-positive interval, bound or negative grace.
    """

    def __init__(
        self,
        policies: Mapping[tuple[str, str], PublishPolicy],
        publish_interval_s: float,
        *,
        max_pending_readings: int = 250_000,
        aggregate_grace_s: float = 0.5,
        units: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        if not publish_interval_s > 0:
            raise ValueError("publish_interval_s must be > 0")
        if max_pending_readings < 1:
            raise ValueError("max_pending_readings must be >= 1")
        if not aggregate_grace_s >= 0:
            raise ValueError("aggregate_grace_s must be >= 0")
        self.publish_interval_s = float(publish_interval_s)
        self.max_pending_readings = max_pending_readings
        self.aggregate_grace_s = float(aggregate_grace_s)
        self._batches: dict[str, DeviceBatch] = {}
        # Per device: tag -> sink of sample tags (every/change), and of aggregate tags.
        # Two maps so that the hot loop can count queued samples without a call.
        self._sinks: dict[str, tuple[dict[str, Sink], dict[str, Sink]]] = {}
        # Devices whose published tags are all `every`: their batch takes polls whole.
        self._whole: dict[str, DeviceBatch] = {}
        self._aggregates: list[_AggregateSlot] = []
        self._next_due = -_INF
        self._since_flush = 0
        self._ingested = 0
        self._overflow = 0
        self._late = 0
        self._messages = 0
        self._values = 0
        self._build(policies, units or {})

    def _build(
        self,
        policies: Mapping[tuple[str, str], PublishPolicy],
        units: Mapping[str, Mapping[str, str]],
    ) -> None:
        by_device: dict[str, list[tuple[str, PublishPolicy]]] = {}
        for (device, tag), policy in policies.items():
            if policy.mode is not PublishMode.NONE:
                by_device.setdefault(device, []).append((tag, policy))
        # Devices of one model publish the same tags: one set for all of them (a set of
        # 125 names is about 8 KB; 100 such devices kept 0.8 MB of copies).
        tag_sets: dict[frozenset[str], frozenset[str]] = {}
        for device, tags in by_device.items():
            sample_tags = frozenset(t for t, p in tags if p.mode is not PublishMode.AGGREGATE)
            sample_tags = tag_sets.setdefault(sample_tags, sample_tags)
            known = units.get(device, {})
            published = {t: known[t] for t, _p in tags if t in known}
            batch = DeviceBatch(device, sample_tags, published)
            self._batches[device] = batch
            if all(p.mode is PublishMode.EVERY for _t, p in tags):
                # Every published tag is `every`: polls go to the batch whole, and the
                # batch leaves out the device's other tags when it builds the message.
                self._whole[device] = batch
                continue
            sinks: dict[str, Sink] = {}
            aggs: dict[str, Sink] = {}
            for tag, policy in tags:
                if policy.mode is PublishMode.EVERY:
                    sinks[tag] = batch.add
                elif policy.mode is PublishMode.CHANGE:
                    sinks[tag] = _ChangeSlot(policy, batch.add).push
                else:
                    slot = _AggregateSlot(tag, policy, batch, self)
                    self._aggregates.append(slot)
                    aggs[tag] = slot.push
            self._sinks[device] = (sinks, aggs)

    @property
    def stats(self) -> TelemetryStats:
        """A snapshot of the engine's counters."""
        return TelemetryStats(
            ingested=self._ingested,
            dropped_overflow=self._overflow,
            dropped_late=self._late,
            messages=self._messages,
            values=self._values,
        )

    @property
    def pending_values(self) -> int:
        """Samples and closed windows waiting for the next message, all devices."""
        return sum(batch.pending_values for batch in self._batches.values())

    def ingest(self, readings: Sequence[Reading]) -> None:
        """Run readings through their tags' state machines.

        Readings are usually one device's poll, but any mix is accepted.
        """
        n = len(readings)
        if not n:
            return
        if self._since_flush >= self.max_pending_readings:
            self._overflow += n
            return
        self._ingested += n
        if type(readings) is ColumnPoll:  # one device's poll as columns
            whole = self._whole.get(readings.device)
            if whole is not None:
                whole.add_poll(readings)
                self._since_flush += n
                return
        device = readings[0].device
        whole = self._whole.get(device)
        if (
            whole is not None
            and readings[-1].device == device
            and all(map(device.__eq__, map(_DEVICE, readings)))
        ):
            # One device's poll: handed over as it is, nothing per reading.
            whole.add_poll(readings)
            self._since_flush += n
            return
        by_device = self._sinks
        by_whole = self._whole
        current: str | None = None
        sinks: dict[str, Sink] = _EMPTY
        aggs: dict[str, Sink] = _EMPTY
        routed = 0
        for r in readings:
            if r.device != current:
                current = r.device
                whole = by_whole.get(current)
                sinks, aggs = by_device.get(current, _NO_SINKS)
            if whole is not None:
                if r.tag in whole.tags:
                    whole.add(r)
                    routed += 1
                continue
            sink = sinks.get(r.tag)
            if sink is not None:
                sink(r)
                routed += 1
            else:
                sink = aggs.get(r.tag)
                if sink is not None:
                    sink(r)
        self._since_flush += routed

    def due(self, now: float, *, clock_unsynced: bool = False) -> list[TelemetryMessage]:
        """Messages due at ``now``: one per device with pending data, once per interval.

        Call it often (every runtime tick); it returns ``[]`` between interval
        boundaries. A backwards clock step of more than one interval flushes
        at once and re-aligns the grid. ``clock_unsynced`` marks the messages
        (``"clock_unsynced": true``) when the caller knows its clock is not synchronised.
        """
        return list(self.iter_due(now, clock_unsynced=clock_unsynced))

    def iter_due(self, now: float, *, clock_unsynced: bool = False) -> Iterator[TelemetryMessage]:
        """Like :meth:`due`, but builds each device's message only when it is asked for.

        A gateway can then store a few messages at a time, so the encoded values of
        every device never exist at once (peak memory).
        """
        interval = self.publish_interval_s
        if self._next_due - interval <= now < self._next_due:
            return
        limit = now - self.aggregate_grace_s
        for slot in self._aggregates:
            if slot.count and slot.end <= limit:
                slot.close(partial_end=None)
        self._next_due = (math.floor(now / interval) + 1) * interval
        yield from self._collect(now, clock_unsynced)

    def flush(self, now: float, *, clock_unsynced: bool = False) -> list[TelemetryMessage]:
        """Everything pending now, including open aggregate windows (for shutdown).

        A window that has not reached its end is reported with ``end = now``
        and ``"partial": true``.
        """
        for slot in self._aggregates:
            if slot.count:
                slot.close(partial_end=None if slot.end <= now else max(now, slot.start))
        return list(self._collect(now, clock_unsynced))

    def _collect(self, now: float, clock_unsynced: bool) -> Iterator[TelemetryMessage]:
        self._since_flush = 0
        for batch in self._batches.values():
            message = batch.build(now, clock_unsynced=clock_unsynced)
            if message is not None:
                self._values += message.values
                self._messages += 1
                yield message
