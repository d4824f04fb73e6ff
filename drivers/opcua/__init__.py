"""OPC-UA driver: subscriptions or batched polling over one session per endpoint.

Registry entry :data:`SPECS` (protocol ``"opcua"``). Devices that share an
endpoint and the same security/identity settings share one session
(:class:`~drivers.opcua.link.OpcuaLink`). Importing this package does not
import asyncua; :func:`build_links` does.

The runtime must fill each device's ``state_dir`` from ``[agent].state_dir``
(see :func:`~drivers.opcua.config.bind_state_dir`) before :func:`build_links`,
so the default client certificate and trust list live in the state directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from drivers.base import DeviceConfig, DriverSpec, Link, ProbeResult
from drivers.opcua.config import PROTOCOL, Mode, OpcuaDevice, OpcuaTag, bind_state_dir, parse_device

if TYPE_CHECKING:
    from drivers.opcua.link import OpcuaLink


def _opcua_devices(devices: Sequence[DeviceConfig]) -> list[OpcuaDevice]:
    out: list[OpcuaDevice] = []
    for dev in devices:
        if not isinstance(dev, OpcuaDevice):
            raise TypeError(f"device {dev.name} is not an OPC-UA device")
        out.append(dev)
    return out


def group_devices(devices: Sequence[OpcuaDevice]) -> list[list[OpcuaDevice]]:
    """Group devices into sessions: same endpoint and session settings -> one link."""
    groups: dict[tuple[object, ...], list[OpcuaDevice]] = {}
    for dev in devices:
        groups.setdefault(dev.session_key(), []).append(dev)
    return list(groups.values())


def build_opcua_links(devices: Sequence[OpcuaDevice]) -> list[OpcuaLink]:
    """One :class:`OpcuaLink` per session group (typed variant of :func:`build_links`)."""
    from drivers.opcua.link import OpcuaLink

    return [OpcuaLink(group) for group in group_devices(devices)]


def build_links(devices: Sequence[DeviceConfig]) -> list[Link]:
    """Build the links of the given OPC-UA devices (``DriverSpec.build_links``)."""
    return list(build_opcua_links(_opcua_devices(devices)))


def describe_plan(devices: Sequence[DeviceConfig]) -> str:
    """Human-readable plan: sessions, modes, intervals and tag addresses (no I/O)."""
    lines: list[str] = []
    for group in group_devices(_opcua_devices(devices)):
        lead = group[0]
        lines.append(
            f"session {lead.endpoint} "
            f"security={lead.security_policy.value}/{lead.security_mode.value} "
            f"identity={lead.identity.value}"
        )
        for dev in group:
            what = "publishing" if dev.mode is Mode.SUBSCRIBE else "poll (one Read per tick)"
            lines.append(
                f"  device {dev.name}: {dev.mode.value}, {what} every {dev.interval_ms} ms, "
                f"watchdog {dev.watchdog_s:g} s"
            )
            for tag in dev.tags:
                extra = ""
                if dev.mode is Mode.SUBSCRIBE:
                    sampling = (
                        tag.sampling_interval_ms
                        if tag.sampling_interval_ms is not None
                        else dev.interval_ms
                    )
                    extra = f" sampling={sampling:g}ms queue={tag.queue_size}"
                    if tag.deadband is not None:
                        extra += f" deadband={tag.deadband:g} {tag.deadband_type.value}"
                lines.append(f"    {tag.name}: {tag.address}{extra}")
    return "\n".join(lines)


async def probe_devices(devices: Sequence[DeviceConfig]) -> list[ProbeResult]:
    """Read every configured tag once (``check-config --probe``); see :mod:`.browse`."""
    from drivers.opcua.browse import probe_devices as _probe

    return await _probe(devices)


SPECS: list[DriverSpec] = [
    DriverSpec(
        protocol=PROTOCOL,
        parse_device=parse_device,
        build_links=build_links,
        describe_plan=describe_plan,
        probe_devices=probe_devices,
    )
]

__all__ = [
    "SPECS",
    "OpcuaDevice",
    "OpcuaTag",
    "bind_state_dir",
    "build_links",
    "build_opcua_links",
    "describe_plan",
    "group_devices",
    "parse_device",
    "probe_devices",
]
