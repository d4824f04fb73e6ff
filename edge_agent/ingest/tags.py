"""The latest reading of every tag and the comms state of every device.

:class:`TagState` is the agent's current view of the plant, for ``status.json``
and health telemetry. It is fed by the dispatcher only (one writer, on the
event loop) and is not durable: the buffer keeps the history.

The view is read far less often than it is fed (``status.json`` every few seconds,
Sparkplug births; 12,500 values a second come in on a large gateway), so a batch is
only queued when it arrives (:class:`LatestReadings`) and applied when a device's
view is read: a poll that a later poll of the same block replaced entirely is never
turned into readings at all.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Iterator, MutableMapping, Sequence

from edge_agent.columns import Column, ColumnPoll
from edge_agent.model import CommsEvent, CommsState, Quality, Reading

_TAG = operator.attrgetter("tag")

Listed = dict[str, list[tuple[str, Reading]]]

#: Batches queued per device before they are applied without a read (bounds memory).
PENDING_MAX = 16


class LatestReadings(MutableMapping[str, dict[str, Reading]]):
    """Device -> (tag -> latest reading); batches are queued and applied on read.

    Reading a device (``[]``, ``get``, iteration) applies its queued batches in
    arrival order first, so what it returns is exactly what applying every batch at
    once would give. Columns of a :class:`~edge_agent.columns.ColumnPoll` that a later
    queued poll of the same block (same ``tags`` tuple) covers are skipped (dropped
    from the queue already when the later poll covers all of them).
    """

    __slots__ = ("_pending", "_views")

    def __init__(self) -> None:
        self._views: dict[str, dict[str, Reading]] = {}
        self._pending: dict[str, list[Sequence[Reading]]] = {}

    def add(self, device: str, readings: Sequence[Reading]) -> None:
        """Queue one device's batch (the newest reading of each tag wins).

        A queued column poll whose every block this one read again is dropped: it
        would be overwritten entirely (a device polled on one schedule keeps one).
        """
        pending = self._pending.get(device)
        if pending is None:
            self._pending[device] = [readings]
            return
        if type(readings) is ColumnPoll:
            blocks = {id(c.tags) for c in readings.columns}
            pending[:] = [
                p
                for p in pending
                if type(p) is not ColumnPoll or not blocks.issuperset(id(c.tags) for c in p.columns)
            ]
        pending.append(readings)
        if len(pending) >= PENDING_MAX:
            self._apply(device)

    def _apply(self, device: str) -> None:
        pending = self._pending.pop(device, None)
        if pending is None:
            return
        views = self._views.get(device)
        if views is None:
            views = self._views[device] = {}
        covered: set[int] = set()  # id() of the tag tuples of newer columns (all alive)
        newest_first: list[Column | Sequence[Reading]] = []
        for batch in reversed(pending):
            if type(batch) is ColumnPoll:
                for column in reversed(batch.columns):
                    if id(column.tags) not in covered:
                        covered.add(id(column.tags))
                        newest_first.append(column)
            else:
                newest_first.append(batch)
        for item in reversed(newest_first):
            if type(item) is Column:
                views.update(zip(item.tags, ColumnPoll(device, (item,)), strict=True))
            else:
                views.update(zip(map(_TAG, item), item, strict=True))  # type: ignore[arg-type]

    def __getitem__(self, device: str) -> dict[str, Reading]:
        if device in self._pending:
            self._apply(device)
        return self._views[device]

    def __setitem__(self, device: str, views: dict[str, Reading]) -> None:
        self._pending.pop(device, None)
        self._views[device] = views

    def __delitem__(self, device: str) -> None:
        found = self._pending.pop(device, None) is not None
        if self._views.pop(device, None) is None and not found:
            raise KeyError(device)

    def __contains__(self, device: object) -> bool:
        return device in self._views or device in self._pending

    def _apply_all(self) -> None:
        for device in list(self._pending):
            self._apply(device)

    def __iter__(self) -> Iterator[str]:
        self._apply_all()
        return iter(self._views)

    def __len__(self) -> int:
        self._apply_all()
        return len(self._views)


class TagState:
    """Latest reading per ``(device, tag)`` and the comms state per device."""

    def __init__(self, devices: Iterable[str] = ()) -> None:
        self.latest = LatestReadings()
        self.comms: dict[str, CommsState] = dict.fromkeys(devices, CommsState.UNKNOWN)

    def update(self, device: str, readings: Sequence[Reading]) -> None:
        """Take one device's batch (the newest reading of each tag wins).

        Kept by reference and applied when the device is read: do not mutate it.
        """
        self.latest.add(device, readings)

    def set_comms(self, event: CommsEvent) -> None:
        """Record a comms transition."""
        self.comms[event.device] = event.state

    def keep_devices(self, devices: Iterable[str]) -> None:
        """After a reload: forget devices no longer configured, add new ones as unknown."""
        names = list(devices)
        self.comms = {d: self.comms.get(d, CommsState.UNKNOWN) for d in names}
        wanted = set(names)
        for gone in [d for d in self.latest if d not in wanted]:
            del self.latest[gone]

    def devices_up(self) -> int:
        """How many devices are up."""
        return sum(1 for s in self.comms.values() if s is CommsState.UP)

    def tag_count(self) -> int:
        """How many tags have a reading."""
        return sum(map(len, self.latest.values()))

    def listed(self, devices: Iterable[str], limit: int) -> Listed | None:
        """The tags a status view lists when there are more than ``limit``.

        ``None`` when every tag fits. Otherwise the tags that are not good come first
        (what a technician looks for), then good ones, both in device order. A big
        gateway's table is bounded: 12,500 tags every 5 s were 1.5 MB written to the
        SD card each time and about 0.6 us of CPU per polled value.
        """
        if self.tag_count() <= limit:
            return None
        order = list(devices)
        good = Quality.GOOD
        listed: Listed = {}
        left = limit
        for name in order:
            views = self.latest.get(name, {})
            chosen = [(t, v) for t, v in views.items() if v.quality is not good][: max(left, 0)]
            listed[name] = chosen
            left -= len(chosen)
        for name in order:
            if left <= 0:
                break
            views = self.latest.get(name, {})
            more = list(
                itertools.islice(((t, v) for t, v in views.items() if v.quality is good), left)
            )
            listed[name] += more
            left -= len(more)
        return listed
