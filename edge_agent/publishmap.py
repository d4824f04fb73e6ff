"""Which policy each published ``(device, tag)`` follows, stored per device.

The configuration answers "how is tag *t* of device *d* published" for every tag
(:attr:`edge_agent.config.AgentConfig.publish`). Nearly every tag follows its
device's default, so a dict with one ``(device, tag)`` key per tag held 12,500
key tuples and a 12,500-slot table for 100 policy objects on the benchmark's
gateway (1.3 MB, ``docs/bench-telemetry.md``, "Resident memory"). A
:class:`PublishMap` keeps, per device, its default, its tag names in config
order and only the tags whose policy differs. It is read-only and is a
:class:`~collections.abc.Mapping` with the same keys, values, order and equality
as that dict (the telemetry engine and the Sparkplug catalog iterate it once at
start; a reload compares it).
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, Sequence
from typing import Any

from edge_agent.telemetry import PublishPolicy

Key = tuple[str, str]


class _Device:
    """One device's default policy, its tags in config order and the tags that differ."""

    __slots__ = ("default", "overrides", "tags")

    def __init__(
        self,
        default: PublishPolicy | None,
        tags: tuple[str, ...],
        overrides: dict[str, PublishPolicy | None],
    ) -> None:
        self.default = default
        self.tags = tags
        self.overrides = overrides

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.default, self.tags, self.overrides)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.default, self.tags, self.overrides = state

    def policy(self, tag: str) -> PublishPolicy | None:
        """The tag's policy when it publishes, else None."""
        policy = self.overrides.get(tag, self.default)
        return policy if policy is not None and policy.publishes else None


class _Items(ItemsView[Key, PublishPolicy]):
    _mapping: PublishMap

    def __iter__(self) -> Iterator[tuple[Key, PublishPolicy]]:
        for name, device in self._mapping.devices.items():
            for tag in device.tags:
                policy = device.policy(tag)
                if policy is not None:
                    yield (name, tag), policy


class PublishMap(Mapping[Key, PublishPolicy]):
    """Published ``(device, tag)`` -> policy, built device by device with :meth:`add_device`."""

    def __init__(self) -> None:
        self.devices: dict[str, _Device] = {}
        self._len = 0

    def add_device(
        self,
        name: str,
        default: PublishPolicy | None,
        tags: Sequence[str],
        overrides: Mapping[str, PublishPolicy | None],
    ) -> None:
        """Add a device: ``tags`` in config order, ``overrides`` for those not on ``default``."""
        differ = {t: p for t, p in overrides.items() if p != default}
        device = _Device(default, tuple(tags), differ)
        self.devices[name] = device
        self._len += sum(1 for t in device.tags if device.policy(t) is not None)

    def __getitem__(self, key: Key) -> PublishPolicy:
        name, tag = key
        device = self.devices.get(name)
        if device is None or (tag not in device.overrides and tag not in device.tags):
            raise KeyError(key)
        policy = device.policy(tag)
        if policy is None:
            raise KeyError(key)
        return policy

    def __iter__(self) -> Iterator[Key]:
        return (key for key, _policy in self.items())

    def __len__(self) -> int:
        return self._len

    def items(self) -> _Items:
        """``((device, tag), policy)`` in config order, without a lookup per key."""
        return _Items(self)

    def __repr__(self) -> str:
        return f"PublishMap({dict(self.items())!r})"
