"""``check-config --probe``: connect to every configured device and read every tag once.

Each driver that can probe provides ``DriverSpec.probe_devices``; this module
only groups devices by protocol, runs the probes concurrently and prints one
line per tag: ok with the decoded value, or bad with the reason.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from drivers import registry
from drivers.base import DeviceConfig, ProbeResult
from edge_agent.config import AgentConfig


async def probe_all(config: AgentConfig) -> bool:
    """Probe every device; print a line per tag; True when every tag read ok."""
    specs = registry()
    by_proto: dict[str, list[DeviceConfig]] = defaultdict(list)
    for dev in config.devices.values():
        by_proto[dev.protocol].append(dev)
    jobs = []
    skipped: list[str] = []
    for proto, devs in by_proto.items():
        probe = specs[proto].probe_devices
        if probe is None:
            skipped.append(proto)
        else:
            jobs.append(probe(devs))
    results: list[ProbeResult] = []
    for chunk in await asyncio.gather(*jobs):
        results.extend(chunk)
    width = max((len(f"{r.device}.{r.tag}") for r in results), default=10)
    for r in results:
        where = f"{r.device}.{r.tag}".ljust(width)
        print(f"  {where}  ok   {r.value!r}" if r.ok else f"  {where}  BAD  {r.reason}")
    for proto in skipped:
        print(f"  ({proto}: this driver cannot probe)")
    bad = sum(1 for r in results if not r.ok)
    print(f"probe: {len(results) - bad} ok, {bad} bad")
    return bad == 0
