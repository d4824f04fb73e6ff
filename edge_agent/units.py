"""Engineering units of the configured tags (``unit = "°C"`` in a tag table).

:func:`tag_units` collects them per device, for the telemetry metadata and
``status.json``; tags without a unit are left out. Drivers keep the unit on
their tag configs (``tag.unit``); a driver whose tags have none contributes
nothing. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping


def tag_units(devices: Mapping[str, object]) -> dict[str, dict[str, str]]:
    """``device -> {tag: unit}`` for every tag configured with a non-empty unit."""
    out: dict[str, dict[str, str]] = {}
    for name, dev in devices.items():
        units = {
            str(getattr(tag, "name", "")): unit
            for tag in getattr(dev, "tags", ())
            if isinstance(unit := getattr(tag, "unit", ""), str) and unit
        }
        if units:
            out[name] = units
    return out
