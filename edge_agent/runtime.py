"""The runtime: wires drivers, buffer, calculator and uplink together and supervises them.

Data flow (each arrow a bounded hand-over)::

    link tasks (one per TCP endpoint / serial port / OPC-UA session)
      └─ QueueSink (bounded; drop-newest counted) ─► processor task
            ├─ Buffer.add_readings / add_comms       (batched SQLite writer)
            ├─ SampleBuilder → MachineCalculator     (pure KPI engine)
            │     └─ stop events ─► outbox
            └─ TelemetryEngine                       (per-tag publish policies)
    reporter task: so-far, final and revised KPI records, state intervals,
                   calculator state ─► buffer / outbox
    uplink task:   outbox ─► MQTT (QoS 1, PUBACK deletes the row)
    health, status-file and watchdog tasks

The runtime only wires and supervises: protocol code lives in ``drivers``,
KPI rules in ``edge_agent.kpi``, durability in ``edge_agent.buffer``.
Guarantees: SIGTERM/SIGINT stop every task, flush the buffer and exit 0
within the unit's stop timeout; SIGHUP reloads the file and applies a valid
one (links whose devices did not change keep running), an invalid one is
logged and the old configuration kept. Time the agent was not running is
never counted as machine time: a clean stop feeds a ``quality = "bad"``
sample, and a start after a crash does the same at the last known sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import itertools
import json
import logging
import operator
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers import registry
from drivers.base import DeviceConfig, Link, run_link
from edge_agent import __version__, logtext, sdnotify
from edge_agent.buffer import Buffer, Outgoing
from edge_agent.clock import clock_synced
from edge_agent.config import AgentConfig, load_config_compact
from edge_agent.errors import ConfigError, StorageFull
from edge_agent.final_status import write_final_status
from edge_agent.health import HealthCollector
from edge_agent.kpi import MachineCalculator, Sample
from edge_agent.kpi.calendar import WindowKind, windows_containing
from edge_agent.machines import MachineConfig, SampleBuilder
from edge_agent.model import CommsEvent, CommsState, Confirmation, Quality, Reading
from edge_agent.telemetry import TelemetryEngine
from edge_agent.uplink import Uplink

log = logging.getLogger("edge_agent.runtime")

PRIORITY_EVENT = 0  # KPI records and stop events: published first, evicted last
PRIORITY_HEALTH = 5
PRIORITY_TELEMETRY = 9
QUEUE_MAX_ITEMS = 10_000
# Messages held in memory while the outbox cannot be written (disk budget or disk full).
OUTGOING_MAX = 20_000
# Telemetry values per outbox commit while a round's messages are built.
TELEMETRY_VALUES_PER_COMMIT = 2_500
# gc.set_threshold after start-up: young generation 10,000 (default 700), see run().
GC_THRESHOLDS = (10_000, 10, 10)
_TAG = operator.attrgetter("tag")


class QueueSink:
    """The drivers' sink: a bounded queue; when full the newest batch is dropped and counted."""

    def __init__(self, maxsize: int = QUEUE_MAX_ITEMS) -> None:
        self.queue: asyncio.Queue[list[Reading] | CommsEvent | Confirmation] = asyncio.Queue(
            maxsize
        )
        self.dropped_readings = 0
        self.dropped_events = 0

    def put_readings(self, readings: Sequence[Reading]) -> None:
        """Queue one batch; never blocks the driver."""
        try:
            self.queue.put_nowait(list(readings))
        except asyncio.QueueFull:
            self.dropped_readings += len(readings)

    def put_comms(self, event: CommsEvent) -> None:
        """Queue a comms event; never blocks the driver."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped_events += 1

    def put_confirmation(self, confirmation: Confirmation) -> None:
        """Queue a confirmation; when full it is dropped (the next one follows shortly)."""
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(confirmation)


@dataclass(slots=True)
class _LinkTask:
    key: tuple[Any, ...]
    link: Link
    task: asyncio.Task[None]


@dataclass(slots=True)
class MachineRuntime:
    """Live state of one machine: its sample builder, calculator and current state."""

    config: MachineConfig
    builder: SampleBuilder
    calc: MachineCalculator
    window_ends: dict[str, float] = field(default_factory=dict)
    state: str = "unknown"
    fault: int | None = None
    since: float | None = None
    last_t: float | None = None
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    finals: set[str] = field(default_factory=set)


class Runtime:
    """Runs one agent configuration until asked to stop."""

    def __init__(self, config: AgentConfig, *, install_signals: bool = True) -> None:
        self.config = config
        self.install_signals = install_signals
        self.sink = QueueSink()
        self.stop_event = asyncio.Event()
        self.reload_event = asyncio.Event()
        self.links: dict[tuple[Any, ...], _LinkTask] = {}
        self.machines: dict[str, MachineRuntime] = {}
        self.tags: dict[str, dict[str, Reading]] = {}
        self.machines_by_device: dict[str, list[MachineRuntime]] = {}
        self._synced: bool | None = None
        self._synced_at = float("-inf")
        self.comms: dict[str, str] = dict.fromkeys(config.devices, "unknown")
        self.started_at = time.time()
        # Stages that run on a timer whatever the devices do; a processor idle because every
        # PLC is off is not a hang, so it is not a stage.
        self.heartbeat = sdnotify.Heartbeat(
            max(60.0, 3 * config.reporting.interval_s, 3 * config.agent.status_interval_s)
        )
        self.buffer = Buffer(config.storage, agent_id=config.agent.id)
        self.uplink = Uplink(
            config.mqtt, self.buffer, agent_id=config.agent.id, site=config.agent.site
        )
        self.uplink.describe(config, self.tags)
        self.uplink_task: asyncio.Task[None] | None = None
        self.telemetry: TelemetryEngine | None = self._make_telemetry(config)
        self.health = HealthCollector(state_dir=config.agent.state_dir)
        self.published_counts: dict[str, int] = {}
        self.outgoing: list[Outgoing] = []
        self.dropped_outgoing: dict[str, int] = {}
        self.storage_full = False
        self.processed = 0

    # -- lifecycle -------------------------------------------------------------
    async def run(self) -> int:
        """Start everything, wait for a stop signal, stop cleanly; return the exit code."""
        cfg = self.config
        cfg.agent.state_dir.mkdir(parents=True, exist_ok=True)
        await self.buffer.open()
        await self._setup_machines(cfg)
        # Config, read plans and imports are long-lived: move them out of the collector's
        # generations so the hot path does not keep re-scanning them (about 1 us per value
        # at 12,500 values/s, see BENCHMARKS.md).
        gc.collect()
        gc.freeze()
        # Readings live about one publish interval, long enough to survive the default
        # youngest generation (700 allocations) and be promoted, so a gateway paid about
        # 2 us per value in collections (gc.callbacks: 400 young, 40 middle and 3 full
        # collections per 10 s at 12,500 values/s). Almost everything allocated here is
        # freed by reference counting; a larger young generation lets it die there.
        gc.set_threshold(*GC_THRESHOLDS)
        loop = asyncio.get_running_loop()
        if self.install_signals:
            loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
            loop.add_signal_handler(signal.SIGINT, self.stop_event.set)
            loop.add_signal_handler(signal.SIGHUP, self.reload_event.set)
            freeze_s = os.environ.get("EDGE_AGENT_DEBUG_FREEZE_S")
            if freeze_s:
                # Diagnostic for checking a device's watchdog set-up: SIGUSR2 blocks the event
                # loop for this many seconds, so systemd must see the pings stop.
                loop.add_signal_handler(signal.SIGUSR2, time.sleep, float(freeze_s))
        self.uplink_task = asyncio.create_task(self.uplink.run(), name="uplink")
        self._apply_links(cfg.devices)
        self.heartbeat.register("status")
        self.heartbeat.register("reporter")
        helpers = [
            asyncio.create_task(self._process(), name="processor"),
            asyncio.create_task(self._report_loop(), name="reporter"),
            asyncio.create_task(self._health_loop(), name="health"),
            asyncio.create_task(self._telemetry_loop(), name="telemetry"),
            asyncio.create_task(self._status_loop(), name="status"),
            asyncio.create_task(self._reload_loop(), name="reload"),
            asyncio.create_task(sdnotify.watchdog_loop(self.heartbeat.is_alive), name="watchdog"),
        ]
        sdnotify.ready(self._status_line())
        log.info(
            "Agent started id=%s devices=%d machines=%d",
            cfg.agent.id,
            len(cfg.devices),
            len(self.machines),
        )
        stop_wait = asyncio.create_task(self.stop_event.wait(), name="stop-wait")
        try:
            pending: set[asyncio.Task[Any]] = {stop_wait, *helpers}
            while not self.stop_event.is_set():
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if (
                        task is not stop_wait
                        and not task.cancelled()
                        and task.exception() is not None
                    ):
                        # A supervisor task died: stop (systemd restarts us) rather than limp on.
                        log.error("Task failed task=%s", task.get_name(), exc_info=task.exception())
                        return 1
            return 0
        finally:
            stop_wait.cancel()
            sdnotify.stopping()
            await self._shutdown(helpers)

    def request_stop(self) -> None:
        """Ask the runtime to stop (used by the demo and tests)."""
        self.stop_event.set()

    async def _shutdown(self, helpers: list[asyncio.Task[Any]]) -> None:
        for lt in list(self.links.values()):
            lt.task.cancel()
        await asyncio.gather(*(lt.task for lt in self.links.values()), return_exceptions=True)
        self.links.clear()
        # Drain what the drivers already handed over, then stop the processor.
        await self._drain_queue()
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        now, mono = time.time(), time.monotonic()
        for mr in self.machines.values():
            # Our own downtime is unknown, not machine downtime.
            mr.calc.add(
                Sample(
                    t=now,
                    run=0,
                    fault=0,
                    good=0,
                    total=0,
                    quality="bad",
                    mono_s=mono,
                    synced=clock_synced(),
                )
            )
        with contextlib.suppress(Exception):
            await self._report_once(final_flush=True)
        with contextlib.suppress(Exception):
            await self.uplink.stop()
        if self.uplink_task is not None:
            self.uplink_task.cancel()
            await asyncio.gather(self.uplink_task, return_exceptions=True)
        await write_final_status(self.config.agent.state_dir / "status.json", self.status_parts)
        await self.buffer.close()
        log.info("Agent stopped id=%s", self.config.agent.id)

    # -- machines and calculators -----------------------------------------------
    @staticmethod
    def _make_telemetry(cfg: AgentConfig) -> TelemetryEngine | None:
        if not cfg.publish:
            return None
        return TelemetryEngine(cfg.publish, publish_interval_s=cfg.telemetry.interval_s)

    async def _setup_machines(self, cfg: AgentConfig) -> None:
        for name, mc in cfg.machines.items():
            self.machines[name] = await self._new_machine(mc)
        self._index_machines()

    async def _new_machine(self, mc: MachineConfig) -> MachineRuntime:
        lateness = self.config.reporting.allowed_lateness_s
        saved = await self.buffer.load_state(f"calc:{mc.name}")
        calc: MachineCalculator | None = None
        if saved is not None and saved.get("profile_hash") == _profile_hash(mc):
            try:
                calc = MachineCalculator.from_state(mc.kpi, saved["state"])
            except Exception:
                log.exception("Discarding unreadable calculator state machine=%s", mc.name)
        if calc is None:
            calc = MachineCalculator(mc.kpi, allowed_lateness_s=lateness)
        elif saved is not None and saved.get("last_t") is not None:
            # Restart after a crash: from the last sample we processed until the first new
            # one, we know nothing. Say so explicitly rather than hold the old state.
            t = float(saved["last_t"]) + 0.001
            calc.add(
                Sample(
                    t=t, run=0, fault=0, good=0, total=0, quality="bad", mono_s=None, synced=None
                )
            )
        return MachineRuntime(config=mc, builder=SampleBuilder(mc), calc=calc)

    def _open_windows(self, mr: MachineRuntime, t: float) -> None:
        """Open the report windows that hold ``t`` (cheap: recomputed only when one ends)."""
        rep = self.config.reporting
        for kind in rep.windows:
            if t < mr.window_ends.get(kind, float("-inf")):
                continue
            windows = windows_containing(mr.config.kpi, WindowKind(kind), t)
            for w in windows:
                mr.calc.open_window(w.name, w.start, w.end)
            # Outside every shift there is no window: look again a minute later.
            mr.window_ends[kind] = min((w.end for w in windows), default=t + 60.0)
        if (
            rep.contract_start is not None
            and rep.contract_end is not None
            and "contract" not in mr.window_ends
        ):
            start, end = rep.contract_start.timestamp(), rep.contract_end.timestamp()
            name = f"contract:{rep.contract_start.isoformat()}/{rep.contract_end.isoformat()}"
            mr.calc.open_window(name, start, end)
            mr.window_ends["contract"] = end

    # -- processing -------------------------------------------------------------
    async def _process(self) -> None:
        while True:
            item = await self.sink.queue.get()
            await self._handle(item)

    async def _drain_queue(self) -> None:
        while not self.sink.queue.empty():
            await self._handle(self.sink.queue.get_nowait())

    async def _handle(self, item: list[Reading] | CommsEvent | Confirmation) -> None:
        self.processed += 1
        if isinstance(item, Confirmation):
            # Unchanged values confirmed (report by exception): not stored, no telemetry;
            # each machine on the device gets a sample when the confirmation is its newest.
            for mr in self.machines_by_device.get(item.device, ()):
                if mr.builder.confirm(item):
                    synced = self._clock_synced(item.mono)
                    self._add_sample(
                        mr, mr.builder.sample(t=item.ts, mono=item.mono, synced=synced)
                    )
            if self.outgoing:
                await self._flush_outgoing()
            return
        if isinstance(item, CommsEvent):
            self.buffer.add_comms(item)
            self.comms[item.device] = "up" if item.state is CommsState.UP else "down"
            self.uplink.device_comms(item.device, item.state is CommsState.UP)
            return
        if not item:
            return
        self.buffer.add_readings(item)
        device = item[0].device
        views = self.tags.setdefault(device, {})
        views.update(zip(map(_TAG, item), item, strict=True))  # latest reading per tag
        if self.telemetry is not None:
            self.telemetry.ingest(item)
        machines = self.machines_by_device.get(device)
        if not machines:
            return
        t = max(r.ts for r in item)
        mono = max(r.mono for r in item)
        synced = self._clock_synced(mono)
        for mr in machines:
            if mr.builder.update(item):
                self._add_sample(mr, mr.builder.sample(t=t, mono=mono, synced=synced))
        if self.outgoing:
            await self._flush_outgoing()

    def _add_sample(self, mr: MachineRuntime, sample: Sample) -> None:
        self._open_windows(mr, sample.t)
        for ev in mr.calc.add(sample):
            self._publish_stop(mr, ev)
        self._track_state(mr, sample)

    def _clock_synced(self, mono: float) -> bool | None:
        """Clock status, re-read at most once a second (it costs a syscall and a stat)."""
        if mono - self._synced_at >= 1.0:
            self._synced, self._synced_at = clock_synced(), mono
        return self._synced

    def _index_machines(self) -> None:
        """Which machines read which device, so a batch only visits its machines."""
        index: dict[str, list[MachineRuntime]] = {}
        for mr in self.machines.values():
            for dev in mr.config.devices:
                index.setdefault(dev, []).append(mr)
        self.machines_by_device = index

    def _track_state(self, mr: MachineRuntime, sample: Sample) -> None:
        if sample.quality != "good":
            state, fault = "unknown", None
        elif sample.run:
            state, fault = "running", sample.fault or None
        else:
            state, fault = "stopped", sample.fault
        if state != mr.state or (state == "stopped" and fault != mr.fault):
            mr.since = sample.t
        mr.state, mr.fault, mr.last_t = state, fault, sample.t

    def _enqueue(
        self,
        kind: str,
        topic: str,
        data: dict[str, Any] | str,
        priority: int,
        *,
        record_key: str | None = None,
    ) -> None:
        """Queue a message for the outbox; :meth:`_flush_outgoing` commits the queue at once."""
        self.outgoing.append(
            Outgoing(kind=kind, topic=topic, data=data, priority=priority, record_key=record_key)
        )

    async def _flush_outgoing(self) -> None:
        """Commit every queued message to the outbox in one transaction (one fsync).

        When the disk budget or the disk is full, the messages stay queued in memory and
        are retried on the next flush; beyond ``OUTGOING_MAX`` the lowest-priority, oldest
        ones are dropped and counted, never a KPI record or a stop event.
        """
        if not self.outgoing:
            return
        batch, self.outgoing = self.outgoing, []
        try:
            await self.buffer.publish_many(batch)
        except StorageFull as exc:
            if not self.storage_full:
                log.error("Outbox full, keeping messages in memory: %s", exc)
            self.storage_full = True
            self.outgoing = batch + self.outgoing
            self._trim_outgoing()
            return
        if self.storage_full:
            log.info("Outbox writable again, %d queued messages stored", len(batch))
            self.storage_full = False
        for m in batch:
            self.published_counts[m.kind] = self.published_counts.get(m.kind, 0) + 1

    def _trim_outgoing(self) -> None:
        excess = len(self.outgoing) - OUTGOING_MAX
        if excess <= 0:
            return
        # Largest priority number = least important; oldest first within it.
        order = sorted(
            (i for i, m in enumerate(self.outgoing) if m.kind not in ("kpi", "stop")),
            key=lambda i: (-self.outgoing[i].priority, i),
        )
        drop = set(order[:excess])
        for i in drop:
            kind = self.outgoing[i].kind
            self.dropped_outgoing[kind] = self.dropped_outgoing.get(kind, 0) + 1
        self.outgoing = [m for i, m in enumerate(self.outgoing) if i not in drop]

    def _publish_stop(self, mr: MachineRuntime, event: Any) -> None:
        data = event.as_dict()
        data["machine"] = mr.config.name
        code = data.get("fault")
        if code:
            data["fault_name"] = mr.config.fault_names.get(int(code))
        topic = self.uplink.topics.stop(machine=mr.config.name)
        self._enqueue("stop", topic, data, PRIORITY_EVENT)
        logtext.log_stop(data)

    # -- reporting --------------------------------------------------------------
    async def _report_loop(self) -> None:
        interval = self.config.reporting.interval_s
        while True:
            await asyncio.sleep(interval)
            await self._report_once()
            self.heartbeat.beat("reporter")

    async def _report_once(self, *, final_flush: bool = False) -> None:
        now = time.time()
        for mr in self.machines.values():
            records = []
            closed = mr.calc.close_due(now)
            mr.finals.update(r.name for r in closed)
            records.extend(closed)
            records.extend(mr.calc.revisions())
            names = mr.calc.window_names()
            mr.finals.intersection_update(names)
            for name in names:
                if name not in mr.finals:
                    # "So far": cut at now, so the rest of the window is not reported as unknown.
                    records.append(mr.calc.record(name, now=now))
            for rec in records:
                data = rec.as_dict()
                data["machine"] = mr.config.name
                kind = data["name"].split(":", 1)[0]
                topic = self.uplink.topics.kpi(machine=mr.config.name, window_kind=kind)
                key = f"{mr.config.name}|{data['name']}|{data['revision']}|{data.get('final')}"
                self._enqueue("kpi", topic, data, PRIORITY_EVENT, record_key=key)
                if kind == "day":
                    logtext.log_kpi_flags(mr.config.name, mr.latest.get("today"), data)
                    mr.latest["today"] = data
                elif kind == "shift":
                    mr.latest["shift"] = data
            intervals = [iv.as_dict() for iv in mr.calc.drain_intervals()]
            if intervals:
                self.buffer.add_intervals(mr.config.name, intervals)
        await self._flush_outgoing()
        for mr in self.machines.values():
            state = {
                "profile_hash": _profile_hash(mr.config),
                "last_t": mr.last_t,
                "state": mr.calc.to_state(),
            }
            try:
                await self.buffer.save_state(f"calc:{mr.config.name}", state)
            except StorageFull:
                # Kept in memory; the next round tries again (records already went out).
                log.debug("Calculator state not saved (storage full) machine=%s", mr.config.name)
        if final_flush and self.telemetry is not None:
            # Shutdown: everything still pending goes out, including open aggregate windows.
            unsynced = self._clock_synced(time.monotonic()) is False
            for msg in self.telemetry.flush(now, clock_unsynced=unsynced):
                topic = self.uplink.topics.telemetry(device=msg.device)
                self._enqueue("telemetry", topic, msg.text, PRIORITY_TELEMETRY)
            await self._flush_outgoing()

    async def _telemetry_loop(self) -> None:
        interval = self.config.telemetry.interval_s
        while True:
            await asyncio.sleep(interval)
            await self._telemetry_once(time.time())

    async def _telemetry_once(self, now: float) -> None:
        if self.telemetry is None:
            return
        # Timestamps read while the wall clock is known unsynchronised are flagged.
        unsynced = self._clock_synced(time.monotonic()) is False
        values = 0
        for msg in self.telemetry.iter_due(now, clock_unsynced=unsynced):
            topic = self.uplink.topics.telemetry(device=msg.device)
            self._enqueue("telemetry", topic, msg.text, PRIORITY_TELEMETRY)
            values += msg.values
            if values >= TELEMETRY_VALUES_PER_COMMIT:
                # Store a slice at a time: the whole round's encoded values never exist
                # at once (peak RSS), for a few more commits per round.
                await self._flush_outgoing()
                values = 0
        await self._flush_outgoing()

    async def _health_loop(self) -> None:
        interval = self.config.health.interval_s
        while True:
            await asyncio.sleep(interval)
            data = self.health_snapshot()
            self._enqueue("health", self.uplink.topics.health(), data, PRIORITY_HEALTH)
            await self._flush_outgoing()
            sdnotify.status(self._status_line())

    def health_snapshot(self) -> dict[str, Any]:
        """Health telemetry payload (``data`` part)."""
        data = self.health.collect()
        data["buffer"] = self.buffer.stats()
        data["uplink"] = self.uplink.state()
        data["devices"] = self._device_diagnostics()
        data["pipeline"] = {
            "dropped_readings": self.sink.dropped_readings,
            "dropped_events": self.sink.dropped_events,
            "queue_depth": self.sink.queue.qsize(),
            "outgoing_in_memory": len(self.outgoing),
            "dropped_outgoing": sum(self.dropped_outgoing.values()),
        }
        return data

    def _device_diagnostics(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for lt in self.links.values():
            for dev, diag in lt.link.diagnostics().items():
                d = diag.as_dict()
                d["comms"] = self.comms.get(dev, "unknown")
                out[dev] = d
        return out

    def _status_line(self) -> str:
        up = sum(1 for s in self.comms.values() if s == "up")
        backlog = self.uplink.state().get("backlog")
        return f"devices up {up}/{len(self.comms)}, backlog {backlog}"

    # -- status file --------------------------------------------------------------
    async def _status_loop(self) -> None:
        interval = self.config.agent.status_interval_s
        path = self.config.agent.state_dir / "status.json"
        while True:
            try:
                # No local name for the parts: they would stay alive through the sleep below.
                await asyncio.to_thread(_write_parts_atomic, path, self.status_parts())
            except Exception:
                log.exception("Could not write status file path=%s", path)
            self.heartbeat.beat("status")
            await asyncio.sleep(interval)

    def _device_status(
        self,
        name: str,
        dev: DeviceConfig,
        diags: dict[str, Any],
        listed: Mapping[str, list[tuple[str, Reading]]] | None,
    ) -> dict[str, Any]:
        views = self.tags.get(name, {})
        return {
            "protocol": dev.protocol,
            "comms": self.comms.get(name, "unknown"),
            "diagnostics": diags.get(name, {}),
            "tag_count": len(views),
            # ``_value_`` is a plain attribute, ``.value`` an enum property costing as
            # much as the rest of the entry.
            "tags": {
                t: {
                    "value": v.value,
                    "quality": v.quality._value_,
                    "ts": v.ts,
                    "reason": v.reason,
                }
                for t, v in (views.items() if listed is None else listed.get(name, ()))
            },
        }

    def _listed_tags(self) -> dict[str, list[tuple[str, Reading]]] | None:
        """The tags status.json lists when there are more than ``status_tags_max``.

        ``None`` when every tag fits. Otherwise the tags that are not good come first
        (what a technician looks for), then good ones, both in device order. A big
        gateway's table is bounded: 12,500 tags every 5 s were 1.5 MB written to the
        SD card each time and about 0.6 us of CPU per polled value.
        """
        limit = self.config.agent.status_tags_max
        if sum(map(len, self.tags.values())) <= limit:
            return None
        good = Quality.GOOD
        listed: dict[str, list[tuple[str, Reading]]] = {}
        left = limit
        for name in self.config.devices:
            views = self.tags.get(name, {})
            chosen = [(t, v) for t, v in views.items() if v.quality is not good][: max(left, 0)]
            listed[name] = chosen
            left -= len(chosen)
        for name in self.config.devices:
            if left <= 0:
                break
            views = self.tags.get(name, {})
            more = list(
                itertools.islice(((t, v) for t, v in views.items() if v.quality is good), left)
            )
            listed[name] += more
            left -= len(more)
        return listed

    def status_json(self) -> str:
        """``status.json`` text: the same document as ``json.dumps(status_snapshot())``."""
        return "".join(self.status_parts())

    def status_parts(self) -> list[str]:
        """``status.json`` text in pieces, encoded one device at a time.

        A gateway with 12,500 tags never holds every tag entry as Python objects at
        once, nor the whole text in one string (written piece by piece: a freed block
        of megabytes would raise glibc's mmap threshold and stay in the heap).
        """
        snapshot = self.status_snapshot(devices=False)
        diags = self._device_diagnostics()
        listed = self._listed_tags()
        head = _dumps(snapshot)
        parts = [head[:-1], ',"devices":{']
        for i, (name, dev) in enumerate(self.config.devices.items()):
            sep = "," if i else ""
            entry = _dumps(self._device_status(name, dev, diags, listed))
            parts.append(f"{sep}{json.dumps(name)}:{entry}")
        parts.append("}}")
        return parts

    def status_snapshot(self, *, devices: bool = True) -> dict[str, Any]:
        """The technician's view, written to ``status.json`` for ``edge-agent status``."""
        diags = self._device_diagnostics() if devices else {}
        listed = self._listed_tags() if devices else None
        device_view = (
            {
                name: self._device_status(name, dev, diags, listed)
                for name, dev in self.config.devices.items()
            }
            if devices
            else None
        )
        machines = {
            name: {
                "state": mr.state,
                "fault": mr.fault,
                "fault_name": mr.config.fault_names.get(mr.fault) if mr.fault else None,
                "since": mr.since,
                "today": mr.latest.get("today"),
                "shift": mr.latest.get("shift"),
            }
            for name, mr in self.machines.items()
        }
        snapshot: dict[str, Any] = {
            "written_at": time.time(),
            "interval_s": self.config.agent.status_interval_s,
            "tags_max": self.config.agent.status_tags_max,
            "agent": {
                "id": self.config.agent.id,
                "version": __version__,
                "pid": os.getpid(),
                "started_at": self.started_at,
                "uptime_s": time.time() - self.started_at,
            },
            "machines": machines,
            "uplink": self.uplink.state(),
            "buffer": self.buffer.stats(),
            "health": self.health.collect(),
            "published": dict(self.published_counts),
        }
        if device_view is not None:
            snapshot["devices"] = device_view
        return snapshot

    # -- links and reload -----------------------------------------------------------
    def _apply_links(self, devices: dict[str, DeviceConfig] | Any) -> None:
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
        for key in [k for k in self.links if k not in wanted]:
            old = self.links.pop(key)
            log.info("Stopping link link=%s", old.link.name)
            old.task.cancel()
        for key, link in wanted.items():
            if key in self.links:
                continue
            tags = {d: devices[d].tag_names for d in link.device_names}
            task = asyncio.create_task(
                run_link(link, self.sink, tags_by_device=tags), name=f"link:{link.name}"
            )
            self.links[key] = _LinkTask(key=key, link=link, task=task)
        self.comms = {d: self.comms.get(d, "unknown") for d in devices}

    async def _reload_loop(self) -> None:
        while True:
            await self.reload_event.wait()
            self.reload_event.clear()
            sdnotify.reloading()
            try:
                await self.reload()
            finally:
                sdnotify.ready(self._status_line())

    async def reload(self) -> bool:
        """Re-read the config file; apply it if valid, else keep the old one. True if applied."""
        try:
            new = await asyncio.to_thread(load_config_compact, self.config.file)
        except ConfigError as exc:
            log.error("Reload rejected, keeping the running configuration:\n%s", exc)
            return False
        old = self.config
        if (
            new.storage != old.storage
            or new.agent.state_dir != old.agent.state_dir
            or new.agent.id != old.agent.id
        ):
            log.warning(
                "Reload: [agent] and [storage] changes need a restart; keeping the old ones"
            )
        # Identity and storage stay as started; everything else comes from the new file.
        self.config = dataclasses.replace(new, file=old.file, agent=old.agent, storage=old.storage)
        self._apply_links(dict(new.devices))
        for name in [m for m in self.machines if m not in new.machines]:
            del self.machines[name]
        for name, mc in new.machines.items():
            current = self.machines.get(name)
            if current is None or current.config != mc:
                self.machines[name] = await self._new_machine(mc)
        self._index_machines()
        self.telemetry = self._make_telemetry(self.config)
        if new.mqtt != old.mqtt:
            log.info("Reload: restarting the uplink with the new [mqtt] settings")
            await self.uplink.stop()
            if self.uplink_task is not None:
                self.uplink_task.cancel()
                await asyncio.gather(self.uplink_task, return_exceptions=True)
            self.uplink = Uplink(new.mqtt, self.buffer, agent_id=old.agent.id, site=old.agent.site)
            self.uplink_task = asyncio.create_task(self.uplink.run(), name="uplink")
        self.uplink.describe(self.config, self.tags)
        log.info(
            "Configuration reloaded devices=%d machines=%d", len(new.devices), len(new.machines)
        )
        return True


def _profile_hash(mc: MachineConfig) -> str:
    from edge_agent.kpi import profile_hash

    return profile_hash(mc.kpi)


def _dumps(data: Any) -> str:
    # json.dumps, not json.dump: dump streams through the pure-Python encoder, about
    # ten times slower than the C one for a gateway's 12,500 tag entries.
    # check_circular=False: the status is a tree we build (the check costs a dict
    # insert and delete per container). ensure_ascii=False: the file is UTF-8, and
    # escaping every key and string to ASCII took about 40 % of the encoding time.
    return json.dumps(
        data, default=str, separators=(",", ":"), check_circular=False, ensure_ascii=False
    )


def _write_parts_atomic(path: Path, parts: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(parts)
    os.replace(tmp, path)


def run_agent(config: AgentConfig, *, on_started: Callable[[Runtime], None] | None = None) -> int:
    """Run the agent in a fresh event loop until SIGTERM/SIGINT."""

    async def main() -> int:
        rt = Runtime(config)
        if on_started is not None:
            on_started(rt)
        return await rt.run()

    return asyncio.run(main())
