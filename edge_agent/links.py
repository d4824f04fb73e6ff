"""Link supervision: one task per physical link, started, kept or replaced on reload.

:class:`LinkSupervisor` builds the links of the configured devices through the
driver registry and runs each in its own task with :func:`drivers.base.run_link`
(which owns reconnection and backoff). On reload it keeps the links whose
devices did not change and replaces the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drivers import registry
from drivers.base import DeviceConfig, DeviceDiagnostics, Link, run_link
from edge_agent.model import ReadingSink

log = logging.getLogger("edge_agent.links")


@dataclass(slots=True)
class _Running:
    key: tuple[Any, ...]
    link: Link
    task: asyncio.Task[None]


class LinkSupervisor:
    """Runs one task per link; links are built by the protocol's driver.

    Args:
        sink: Where every link puts its readings and comms events.
    """

    def __init__(self, sink: ReadingSink) -> None:
        self.sink = sink
        self._running: dict[tuple[Any, ...], _Running] = {}

    def apply(self, devices: Mapping[str, DeviceConfig]) -> None:
        """Start links for ``devices``; keep running links whose devices are unchanged."""
        specs = registry()
        by_protocol: dict[str, list[DeviceConfig]] = {}
        for dev in devices.values():
            by_protocol.setdefault(dev.protocol, []).append(dev)
        wanted: dict[tuple[Any, ...], Link] = {}
        for protocol, devs in by_protocol.items():
            for link in specs[protocol].build_links(devs):
                key = (protocol, tuple(sorted((d, repr(devices[d])) for d in link.device_names)))
                wanted[key] = link
        for key in [k for k in self._running if k not in wanted]:
            old = self._running.pop(key)
            log.info("Stopping link link=%s", old.link.name)
            old.task.cancel()
        for key, link in wanted.items():
            if key in self._running:
                continue
            tags = {d: devices[d].tag_names for d in link.device_names}
            task = asyncio.create_task(
                run_link(link, self.sink, tags_by_device=tags), name=f"link:{link.name}"
            )
            self._running[key] = _Running(key=key, link=link, task=task)

    async def stop(self) -> None:
        """Stop every link and wait until each has closed its connection."""
        running = list(self._running.values())
        self._running.clear()
        for r in running:
            r.task.cancel()
        await asyncio.gather(*(r.task for r in running), return_exceptions=True)

    def diagnostics(self) -> dict[str, DeviceDiagnostics]:
        """Per-device diagnostics of every running link (live objects: read, do not mutate)."""
        out: dict[str, DeviceDiagnostics] = {}
        for r in self._running.values():
            out.update(r.link.diagnostics())
        return out
