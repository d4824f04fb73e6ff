"""``status.json``: the technician's view of the running agent, for ``edge-agent status``.

:class:`StatusFile` writes, every ``[agent] status_interval_s``, one JSON document:
the agent (id, version, pid, uptime), every machine's state and today's and the
current shift's record, every contract's latest status, every device's comms state,
diagnostics and latest tag values (at most ``status_tags_max`` tags, the ones not
good first), the uplink, the buffer, host health and what became of the messages of
each kind (``outgoing``: created, stored, superseded, dropped, held). The file is
replaced atomically (written beside it, then renamed); when it cannot be written (a
full disk) the old one stays, the failure is logged once and the next interval
retries (:mod:`edge_agent.ops.statuswrite`).

A gateway with 12,500 tags never holds every tag entry as Python objects at once,
nor the whole text in one string: the document is encoded one device at a time
and written piece by piece (a freed block of megabytes would raise glibc's mmap
threshold and stay in the heap).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from drivers.base import DeviceConfig
from edge_agent import __version__
from edge_agent.buffer import Buffer
from edge_agent.config import AgentConfig
from edge_agent.ingest.tags import Listed, TagState
from edge_agent.links import LinkSupervisor
from edge_agent.model import CommsState
from edge_agent.ops.events import EventLog
from edge_agent.ops.health import HealthCollector
from edge_agent.ops.statuswrite import Opener, StatusWriteGuard, write_atomic
from edge_agent.ops.tuning import compact_json
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.reporting.contracts import ContractDesk
from edge_agent.reporting.machine import MachineSet
from edge_agent.units import tag_units
from edge_agent.uplink import Uplink

log = logging.getLogger("edge_agent.status")


class StatusSources(Protocol):
    """What the status file reads: the runtime's parts (some replaced on reload)."""

    @property
    def config(self) -> AgentConfig:
        """The configuration in force."""

    @property
    def uplink(self) -> Uplink:
        """The uplink in force."""

    started_at: float
    tags: TagState
    links: LinkSupervisor
    machines: MachineSet
    contracts: ContractDesk
    buffer: Buffer
    staging: OutboxStaging
    health: HealthCollector
    events: EventLog


def device_diagnostics(links: LinkSupervisor, tags: TagState) -> dict[str, dict[str, Any]]:
    """Every device's diagnostics, with its comms state."""
    out: dict[str, dict[str, Any]] = {}
    for dev, diag in links.diagnostics().items():
        d = diag.as_dict()
        d["comms"] = tags.comms.get(dev, CommsState.UNKNOWN).value
        out[dev] = d
    return out


class StatusFile:
    """Builds and writes ``status.json``.

    Args:
        sources: The runtime's parts the document is made of.
        path: The file to replace.
    """

    def __init__(self, sources: StatusSources, path: Path, *, opener: Opener | None = None) -> None:
        self.sources = sources
        self.path = path
        self.guard = StatusWriteGuard(sources.events, path)
        self._opener = opener
        # Units per device of the configuration in force (rebuilt when a reload replaces it).
        self._units_of: Mapping[str, DeviceConfig] | None = None
        self._units: dict[str, dict[str, str]] = {}

    async def run(self, interval_s: Callable[[], float], beat: Callable[[], None]) -> None:
        """Write the file every ``interval_s()`` seconds until cancelled."""
        while True:
            await self.write()
            beat()
            await asyncio.sleep(interval_s())

    async def write(self) -> bool:
        """Write the file once; a failure keeps the old file and is logged once while it lasts."""
        try:
            # No local name for the parts: they would stay alive through the sleep in run().
            if self._opener is None:
                await asyncio.to_thread(write_atomic, self.path, self.parts())
            else:
                await asyncio.to_thread(write_atomic, self.path, self.parts(), opener=self._opener)
        except Exception as exc:
            self.guard.failed(exc)
            return False
        self.guard.written()
        return True

    def parts(self) -> list[str]:
        """``status.json`` text in pieces: the :meth:`snapshot`, then one device at a time."""
        src = self.sources
        snapshot = self.snapshot()
        diags = device_diagnostics(src.links, src.tags)
        listed = src.tags.listed(src.config.devices, src.config.agent.status_tags_max)
        head = compact_json(snapshot)
        parts = [head[:-1], ',"devices":{']
        for i, (name, dev) in enumerate(src.config.devices.items()):
            sep = "," if i else ""
            entry = compact_json(self._device(name, dev, diags, listed))
            parts.append(f"{sep}{json.dumps(name)}:{entry}")
        parts.append("}}")
        return parts

    def snapshot(self) -> dict[str, Any]:
        """The document without its ``devices`` (encoded one at a time by :meth:`parts`)."""
        src = self.sources
        cfg = src.config
        machines = {
            name: {
                "state": lm.state.value,
                "fault": lm.fault,
                "fault_name": lm.config.fault_names.get(lm.fault) if lm.fault else None,
                "since": lm.since,
                "today": lm.latest.get("today"),
                "today_before_reload": _same_window(lm.latest.get("today"), lm.today_before_reload),
                "shift": lm.latest.get("shift"),
            }
            for name, lm in src.machines.items()
        }
        snapshot: dict[str, Any] = {
            "written_at": time.time(),
            "interval_s": cfg.agent.status_interval_s,
            "tags_max": cfg.agent.status_tags_max,
            "agent": {
                "id": cfg.agent.id,
                "version": __version__,
                "pid": os.getpid(),
                "started_at": src.started_at,
                "uptime_s": time.time() - src.started_at,
            },
            "machines": machines,
            "contracts": dict(src.contracts.latest),
            "uplink": src.uplink.state(),
            "buffer": src.buffer.stats(),
            "health": src.health.collect(slots=False),
            "published": dict(src.staging.published),
            "outgoing": src.staging.accounting(),
        }
        return snapshot

    def _device(
        self,
        name: str,
        dev: DeviceConfig,
        diags: Mapping[str, Any],
        listed: Listed | None,
    ) -> dict[str, Any]:
        views: Mapping[str, Any] = self.sources.tags.latest.get(name, {})
        devices = self.sources.config.devices
        if self._units_of is not devices:
            self._units_of, self._units = devices, tag_units(devices)
        units = self._units.get(name, {})
        return {
            "protocol": dev.protocol,
            "comms": self.sources.tags.comms.get(name, CommsState.UNKNOWN).value,
            "diagnostics": diags.get(name, {}),
            "tag_count": len(views),
            # ``_value_`` is a plain attribute, ``.value`` an enum property costing as
            # much as the rest of the entry.
            "tags": {
                t: _tag_entry(v, units.get(t))
                for t, v in (views.items() if listed is None else listed.get(name, ()))
            },
        }


def _same_window(today: Mapping[str, Any] | None, parts: list[dict[str, Any]]) -> list[Any]:
    """Final records of today's window before a profile-changing reload (that window only)."""
    if today is None:
        return list(parts)
    window = _window(today)
    return [p for p in parts if _window(p) == window]


def _window(record: Mapping[str, Any]) -> str:
    """A record's window before any reload split (``day:X~...`` -> ``day:X``)."""
    return str(record.get("window", record.get("name", ""))).split("~", 1)[0]


def _tag_entry(v: Any, unit: str | None) -> dict[str, Any]:
    """One tag of status.json; ``unit`` only for a tag configured with one."""
    entry = {"value": v.value, "quality": v.quality._value_, "ts": v.ts, "reason": v.reason}
    if unit:
        entry["unit"] = unit
    return entry


def _write_parts_atomic(path: Path, parts: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(parts)
    os.replace(tmp, path)
