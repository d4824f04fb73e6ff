"""The latest reading of every tag and the comms state of every device.

:class:`TagState` is the agent's current view of the plant, for ``status.json``
and health telemetry. It is fed by the dispatcher only (one writer, on the
event loop) and is not durable: the buffer keeps the history.

The view is read far less often than it is fed (``status.json`` every few seconds,
Sparkplug births; 12,500 values a second come in on a large gateway), so a tag
polled as part of a :class:`~edge_agent.columns.ColumnPoll` is kept as a reference
to its column (one dict entry, no reading built) and its reading is built when it is
read (:class:`DeviceView`). A status listing that holds only part of the tags builds
only the readings it lists.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from itertools import repeat

from edge_agent.columns import Column, ColumnPoll
from edge_agent.model import CommsEvent, CommsState, Quality, Reading

_TAG = operator.attrgetter("tag")
_GOOD = Quality.GOOD
_new = tuple.__new__

Listed = dict[str, list[tuple[str, Reading]]]

#: Column layouts whose tag positions are remembered (a device has one per block).
LAYOUTS_MAX = 4096


class DeviceView(Mapping[str, Reading]):
    """One device's latest reading per tag (tags in the order they were first seen).

    Entries are readings, or the column a tag was last polled in (its reading is
    built on access: good, the column's value and times).
    """

    __slots__ = ("_device", "_entries", "_positions")

    def __init__(
        self,
        device: str,
        entries: dict[str, Reading | Column],
        positions: dict[int, tuple[tuple[str, ...], dict[str, int]]],
    ) -> None:
        self._device = device
        self._entries = entries
        self._positions = positions  # id(tags) -> (tags, tag -> index); shared, bounded

    def _reading(self, tag: str, entry: Reading | Column) -> Reading:
        if type(entry) is not Column:
            return entry  # type: ignore[return-value]
        tags = entry.tags
        known = self._positions.get(id(tags))
        if known is None or known[0] is not tags:
            if len(self._positions) >= LAYOUTS_MAX:
                self._positions.clear()
            known = self._positions[id(tags)] = (tags, {t: i for i, t in enumerate(tags)})
        value = entry.values[known[1][tag]]
        return _new(Reading, (self._device, tag, value, entry.ts, entry.mono, _GOOD, "", None))

    def __getitem__(self, tag: str) -> Reading:
        return self._reading(tag, self._entries[tag])

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, tag: object) -> bool:
        return tag in self._entries

    def not_good(self) -> Iterator[tuple[str, Reading]]:
        """The tags whose latest reading is not good, in order (columns are all good)."""
        good = _GOOD
        for tag, entry in self._entries.items():
            if type(entry) is not Column and entry.quality is not good:  # type: ignore[union-attr]
                yield tag, entry  # type: ignore[misc]

    def good(self) -> Iterator[tuple[str, Reading]]:
        """The tags whose latest reading is good, in order, readings built as they go."""
        good = _GOOD
        for tag, entry in self._entries.items():
            if type(entry) is Column:
                yield tag, self._reading(tag, entry)
            elif entry.quality is good:  # type: ignore[union-attr]
                yield tag, entry  # type: ignore[misc]


class LatestReadings(MutableMapping[str, DeviceView]):
    """Device -> :class:`DeviceView`, fed batch by batch (the newest reading of a tag wins)."""

    __slots__ = ("_entries", "_positions")

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Reading | Column]] = {}
        self._positions: dict[int, tuple[tuple[str, ...], dict[str, int]]] = {}

    def add(self, device: str, readings: Sequence[Reading]) -> None:
        """Take one device's batch: a column poll costs one dict entry per tag, no reading."""
        entries = self._entries.get(device)
        if entries is None:
            entries = self._entries[device] = {}
        if type(readings) is ColumnPoll:
            for column in readings.columns:
                entries.update(zip(column.tags, repeat(column)))
        else:
            entries.update(zip(map(_TAG, readings), readings, strict=True))

    def __getitem__(self, device: str) -> DeviceView:
        return DeviceView(device, self._entries[device], self._positions)

    def __setitem__(self, device: str, views: Mapping[str, Reading]) -> None:
        self._entries[device] = dict(views)

    def __delitem__(self, device: str) -> None:
        del self._entries[device]

    def __contains__(self, device: object) -> bool:
        return device in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def tag_count(self) -> int:
        """How many tags have a reading, all devices."""
        return sum(map(len, self._entries.values()))


class TagState:
    """Latest reading per ``(device, tag)`` and the comms state per device."""

    def __init__(self, devices: Iterable[str] = ()) -> None:
        self.latest = LatestReadings()
        self.comms: dict[str, CommsState] = dict.fromkeys(devices, CommsState.UNKNOWN)

    def update(self, device: str, readings: Sequence[Reading]) -> None:
        """Take one device's batch (the newest reading of each tag wins).

        A column poll's columns are kept by reference: do not mutate them.
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
        return self.latest.tag_count()

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
        latest = self.latest
        listed: Listed = {}
        left = limit
        for name in order:
            chosen = list(latest[name].not_good()) if name in latest else []
            listed[name] = chosen[: max(left, 0)]
            left -= len(listed[name])
        for name in order:
            if left <= 0:
                break
            if name not in latest:
                continue
            more = list(itertools.islice(latest[name].good(), left))
            listed[name] += more
            left -= len(more)
        return listed
