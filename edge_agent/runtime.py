"""The runtime: wires the agent's parts together and supervises their tasks.

Data flow (each arrow a bounded hand-over; one module per box)::

    links.LinkSupervisor        one task per TCP endpoint / serial port / OPC-UA session
      └─ ingest.IngestQueue     bounded; full-queue behaviour counted
           └─ ingest.Dispatcher ─┬─ buffer (batched SQLite writer)
                                 ├─ ingest.TagState (latest value per tag, comms)
                                 ├─ outgoing.TelemetryPump ─┐
                                 └─ reporting.MachineSet ───┤ stop events
    reporting.Reporter (records, intervals, saved state) ───┤
    health telemetry ───────────────────────────────────────┤
                                          outgoing.OutboxStaging ─► buffer outbox
    uplink.Uplink: outbox ─► MQTT (QoS 1, PUBACK deletes the row)
    ops.StatusFile, watchdog, reload

This module only builds the parts, starts their loops and stops them in order;
what each part does is in its own module. Guarantees: SIGTERM/SIGINT stop every
task, flush the buffer and exit 0 within the unit's stop timeout; SIGHUP reloads
the file and applies a valid one (links whose devices did not change keep
running), an invalid one is logged and the old configuration kept; a failing
task stops the agent with exit code 1 (systemd restarts it). Time the agent was
not running is never counted as machine time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any

from edge_agent.buffer import Buffer, MessageKind
from edge_agent.config import AgentConfig, load_config_compact
from edge_agent.errors import ConfigError
from edge_agent.final_status import write_final_status
from edge_agent.ingest.dispatch import Dispatcher
from edge_agent.ingest.queue import IngestQueue
from edge_agent.ingest.tags import TagState
from edge_agent.links import LinkSupervisor
from edge_agent.ops import sdnotify, tuning
from edge_agent.ops.clock import ClockWatch
from edge_agent.ops.events import Event, EventLog
from edge_agent.ops.health import HealthCollector
from edge_agent.ops.status import StatusFile, device_diagnostics
from edge_agent.ops.watch import Watch
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.outgoing.telemetry import TelemetryPump
from edge_agent.reporting.machine import MachineSet
from edge_agent.reporting.reporter import Reporter
from edge_agent.telemetry import TelemetryEngine
from edge_agent.uplink import Uplink

log = logging.getLogger("edge_agent.runtime")


def _engine(cfg: AgentConfig) -> TelemetryEngine | None:
    if not cfg.publish:
        return None
    return TelemetryEngine(cfg.publish, publish_interval_s=cfg.telemetry.interval_s)


class Runtime:
    """Runs one agent configuration until asked to stop.

    Args:
        config: The validated configuration.
        install_signals: Handle SIGTERM/SIGINT/SIGHUP (off when embedded: demo, tests).
        clock: Clock status (tests inject one); its changes are counted as events.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        install_signals: bool = True,
        clock: ClockWatch | None = None,
    ) -> None:
        self.config = config
        self.install_signals = install_signals
        self.stop_event = asyncio.Event()
        self.reload_event = asyncio.Event()
        self.started_at = time.time()
        self.events = events = EventLog()
        self.clock = clock or ClockWatch()
        self.clock.events = events
        self.queue = IngestQueue(config.ingest, events)
        self.tags = TagState(config.devices)
        self.buffer = Buffer(config.storage, agent_id=config.agent.id)
        self.uplink = self._make_uplink(config)
        self.uplink.describe(config, self.tags.latest)
        self.uplink_task: asyncio.Task[None] | None = None
        self.staging = OutboxStaging(self.buffer, self.uplink.topics, events)
        self.telemetry = TelemetryPump(_engine(config), self.staging, self.clock, events)
        self.machines = MachineSet(self.buffer, config.reporting, events)
        self.reporter = Reporter(self.machines, self.staging, self.buffer, events=events)
        self.links = LinkSupervisor(self.queue)
        self.dispatcher = Dispatcher(
            buffer=self.buffer,
            tags=self.tags,
            telemetry=self.telemetry,
            machines=self.machines,
            staging=self.staging,
            clock=self.clock,
            events=events,
            on_comms=self._device_comms,
        )
        self.watch = Watch(self.buffer, self.clock, events)
        self.health = HealthCollector(state_dir=config.agent.state_dir)
        self.health.provide("buffer", self.buffer.stats)
        self.health.provide("uplink", self._uplink_state)
        self.health.provide("devices", lambda: device_diagnostics(self.links, self.tags))
        self.health.provide("events", events.snapshot)
        self.health.provide("pipeline", self._pipeline_figures)
        self.status = StatusFile(self, config.agent.state_dir / "status.json")
        # Stages that run on a timer whatever the devices do; a dispatcher idle because
        # every PLC is off is not a hang, so it is not a stage.
        self.heartbeat = sdnotify.Heartbeat(
            max(60.0, 3 * config.reporting.interval_s, 3 * config.agent.status_interval_s)
        )

    def _make_uplink(self, cfg: AgentConfig) -> Uplink:
        return Uplink(cfg.mqtt, self.buffer, agent_id=cfg.agent.id, site=cfg.agent.site)

    # -- lifecycle -------------------------------------------------------------
    async def run(self) -> int:
        """Start everything, wait for a stop signal, stop cleanly; return the exit code."""
        cfg = self.config
        cfg.agent.state_dir.mkdir(parents=True, exist_ok=True)
        await self.buffer.open()
        await self.machines.start(cfg.machines)
        tuning.settle_heap()
        if self.install_signals:
            self._install_signals()
        self.uplink_task = asyncio.create_task(self.uplink.run(), name="uplink")
        await self.links.apply(cfg.devices)
        self.heartbeat.register("status")
        self.heartbeat.register("reporter")
        loops: dict[str, Coroutine[Any, Any, None]] = {
            "dispatcher": self.dispatcher.run(self.queue),
            "reporter": self.reporter.run(
                cfg.reporting.interval_s, lambda: self.heartbeat.beat("reporter")
            ),
            "health": self._health_loop(),
            "telemetry": self.telemetry.run(cfg.telemetry.interval_s),
            "status": self.status.run(
                lambda: self.config.agent.status_interval_s, lambda: self.heartbeat.beat("status")
            ),
            "reload": self._reload_loop(),
            "links": self.links.watch(),
            "watch": self.watch.run(),
            "watchdog": sdnotify.watchdog_loop(self.heartbeat.is_healthy),
        }
        tasks = [asyncio.create_task(coro, name=name) for name, coro in loops.items()]
        sdnotify.ready(self._status_line())
        log.info(
            "Agent started id=%s devices=%d machines=%d",
            cfg.agent.id,
            len(cfg.devices),
            len(self.machines),
        )
        try:
            return await _supervise(tasks, self.stop_event)
        finally:
            sdnotify.stopping()
            await self._shutdown(tasks)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        loop.add_signal_handler(signal.SIGINT, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_event.set)
        freeze_s = os.environ.get("EDGE_AGENT_DEBUG_FREEZE_S")
        if freeze_s:
            # Diagnostic for checking a device's watchdog set-up: SIGUSR2 blocks the event
            # loop for this many seconds, so systemd must see the pings stop.
            loop.add_signal_handler(signal.SIGUSR2, time.sleep, float(freeze_s))

    def request_stop(self) -> None:
        """Ask the runtime to stop (used by the demo and tests)."""
        self.stop_event.set()

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        await self.links.stop()
        # Hand on what the drivers already queued, then stop the loops.
        await self.dispatcher.drain(self.queue)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        mono = time.monotonic()
        self.machines.mark_unknown(time.time(), mono, self.clock.synced(mono))
        # Not suppressed: records or calculator state not stored here are lost, so a
        # failure is logged with its traceback and counted, never silent.
        try:
            await self.reporter.report()
            await self.telemetry.flush(time.time())
        except Exception as exc:
            self.events.enter(Event.FLUSH_FAILED, "final_report", exc_info=exc)
        if self.staging.held:
            log.error(
                "Stopping with messages the outbox did not take messages=%d", len(self.staging)
            )
        try:
            await self.uplink.stop()
        except Exception as exc:
            self.events.enter(Event.FLUSH_FAILED, "uplink_stop", exc_info=exc)
        if self.uplink_task is not None:
            self.uplink_task.cancel()
            await asyncio.gather(self.uplink_task, return_exceptions=True)
        await write_final_status(self.status.path, self.status.parts)
        await self.buffer.close()
        log.info("Agent stopped id=%s", self.config.agent.id)

    # -- health -------------------------------------------------------------------
    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health.interval_s)
            await self.publish_health()
            sdnotify.status(self._status_line())

    async def publish_health(self) -> None:
        """Stage one health message and commit it to the outbox."""
        self.staging.stage(MessageKind.HEALTH, self.staging.topics.health(), self.health_snapshot())
        await self.staging.flush()

    def health_snapshot(self) -> dict[str, Any]:
        """Health telemetry payload (``data`` part)."""
        return self.health.collect()

    def _pipeline_figures(self) -> dict[str, int]:
        return {
            "dropped_readings": self.queue.dropped_readings,
            "dropped_events": self.queue.dropped_events,
            "queue_depth": len(self.queue),
            "outgoing_in_memory": len(self.staging),
            "dropped_outgoing": sum(self.staging.dropped.values()),
        }

    def _device_comms(self, device: str, up: bool) -> None:
        self.uplink.device_comms(device, up)  # the uplink is replaced when [mqtt] changes

    def _uplink_state(self) -> dict[str, Any]:
        return self.uplink.state()  # the uplink is replaced when [mqtt] changes

    def _status_line(self) -> str:
        backlog = self.uplink.state().get("backlog")
        return f"devices up {self.tags.devices_up()}/{len(self.tags.comms)}, backlog {backlog}"

    # -- reload -------------------------------------------------------------------
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
        """Re-read the config file; apply it if valid, else keep the old one. True if applied.

        Every part is compared by value and only what changed is replaced: links are
        stopped (and awaited) before their replacements open the same endpoints,
        unchanged machines keep running, pending telemetry is published before its
        engine is replaced.
        """
        try:
            new = await asyncio.to_thread(load_config_compact, self.config.file)
        except ConfigError as exc:
            self.events.occurred(Event.RELOAD_REJECTED, detail=str(exc))
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
        self.config = cfg = dataclasses.replace(
            new, file=old.file, agent=old.agent, storage=old.storage
        )
        await self.links.apply(cfg.devices)
        self.tags.keep_devices(cfg.devices)
        await self.reporter.retire(await self.machines.reload(cfg.machines, cfg.reporting))
        if cfg.publish != old.publish or cfg.telemetry != old.telemetry:
            await self.telemetry.replace(_engine(cfg))
        if cfg.mqtt != old.mqtt:
            log.info("Reload: restarting the uplink with the new [mqtt] settings")
            await self.uplink.stop()
            if self.uplink_task is not None:
                self.uplink_task.cancel()
                await asyncio.gather(self.uplink_task, return_exceptions=True)
            self.uplink = self._make_uplink(cfg)
            self.staging.topics = self.uplink.topics
            self.uplink_task = asyncio.create_task(self.uplink.run(), name="uplink")
        self.uplink.describe(cfg, self.tags.latest)
        self.events.occurred(
            Event.RELOAD_ACCEPTED, devices=len(cfg.devices), machines=len(cfg.machines)
        )
        return True


async def _supervise(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> int:
    """Wait for ``stop`` or the first task to fail; 0 on a stop, 1 when a task failed.

    A structured group like ``asyncio.TaskGroup`` (3.11+; our floor is 3.10) with a
    stop signal; a loop that returns (the watchdog when systemd set none) is done,
    not failed. The caller then stops everything in order.
    """
    stop_wait = asyncio.create_task(stop.wait(), name="stop-wait")
    pending: set[asyncio.Task[Any]] = {stop_wait, *tasks}
    try:
        while not stop.is_set():
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is stop_wait or task.cancelled() or task.exception() is None:
                    continue
                # A supervised task died: stop (systemd restarts us) rather than limp on.
                log.error("Task failed task=%s", task.get_name(), exc_info=task.exception())
                return 1
        return 0
    finally:
        stop_wait.cancel()


def run_agent(config: AgentConfig, *, on_started: Callable[[Runtime], None] | None = None) -> int:
    """Run the agent in a fresh event loop until SIGTERM/SIGINT."""

    async def main() -> int:
        rt = Runtime(config)
        if on_started is not None:
            on_started(rt)
        return await rt.run()

    return asyncio.run(main())
