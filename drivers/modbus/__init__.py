"""Modbus TCP and RTU driver: typed config, pure planner and decoders, one owner task per link.

Only :data:`SPECS` is the registry's entry point; the sub-modules are
``config`` (parse ``[devices.<name>]``), ``codec`` (pure decoders),
``planner`` (pure request planning), ``link`` (the link owner) and ``probe``
(technician tools). pymodbus types never leave this package.
"""

from __future__ import annotations

from collections.abc import Sequence

from drivers.base import DeviceConfig, DriverSpec, Link, ProbeResult
from drivers.modbus.config import (
    PROTOCOL_RTU,
    PROTOCOL_TCP,
    ModbusDeviceConfig,
    check_shared_links,
    parse_device,
)
from drivers.modbus.planner import describe_plan


def _build_links(devices: Sequence[DeviceConfig]) -> list[Link]:
    # Imported here so check-config does not import pymodbus.
    from drivers.modbus.link import build_links

    return list(build_links(devices))


def _describe(devices: Sequence[DeviceConfig]) -> str:
    return describe_plan(devices)


async def _probe(devices: Sequence[DeviceConfig]) -> list[ProbeResult]:
    from drivers.modbus.probe import probe_devices

    return await probe_devices(devices)


SPECS: list[DriverSpec] = [
    DriverSpec(
        protocol=protocol,
        parse_device=parse_device,
        build_links=_build_links,
        describe_plan=_describe,
        probe_devices=_probe,
        check_devices=check_shared_links,
    )
    for protocol in (PROTOCOL_TCP, PROTOCOL_RTU)
]

__all__ = ["SPECS", "ModbusDeviceConfig", "parse_device", "describe_plan"]
