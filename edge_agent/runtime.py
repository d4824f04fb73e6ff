"""The runtime: builds the agent's parts, runs their loops, stops them in order.

Links feed the ingest queue; the dispatcher hands each batch to the buffer, the tag
state, the telemetry pump and the machines; the reporter, the health report and the
machines' stop events stage messages for the outbox, which the sender's uplink drains
(the data-flow diagram is in ``docs/architecture.md``). What each part does is in its
own module; this one only wires and supervises.

Guarantees: SIGTERM/SIGINT stop every task, flush and exit 0 within the unit's stop
timeout; a loop that fails stops the agent with exit code 1 (systemd restarts it);
SIGHUP applies a valid file part by part (only what changed is replaced, see
:meth:`Runtime.reload`) and keeps the running configuration on an invalid one. Time
the agent was not running is never counted as machine time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from edge_agent.buffer import Buffer
from edge_agent.config import AgentConfig, load_config_compact
from edge_agent.errors import ConfigError
from edge_agent.evidence import agent as evidence
from edge_agent.final_status import write_final_status
from edge_agent.ingest.dispatch import Dispatcher
from edge_agent.ingest.queue import IngestQueue
from edge_agent.ingest.tags import TagState
from edge_agent.links import LinkSupervisor
from edge_agent.ops import sdnotify, signals, tuning
from edge_agent.ops.clock import ClockWatch
from edge_agent.ops.events import Event, EventLog
from edge_agent.ops.health import HealthCollector
from edge_agent.ops.health_report import HealthReport
from edge_agent.ops.status import StatusFile, device_diagnostics
from edge_agent.ops.watch import Watch
from edge_agent.outgoing.holdmark import HOLD_MARK, HoldMark
from edge_agent.outgoing.sender import Sender
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.outgoing.telemetry import TelemetryPump, engine_for
from edge_agent.reporting.contracts import ContractDesk
from edge_agent.reporting.machine import MachineSet
from edge_agent.reporting.reporter import Reporter
from edge_agent.uplink import TopicTemplates, Uplink

log = logging.getLogger("edge_agent.runtime")


class Runtime:
    """Runs one agent configuration until asked to stop.

    Args:
        config: The validated configuration.
        install_signals: Handle SIGTERM/SIGINT/SIGHUP (off when embedded: demo, tests).
        clock: Clock status (tests inject one); its changes are counted as events.
    """

    def __init__(
        self, config: AgentConfig, *, install_signals: bool = True, clock: ClockWatch | None = None
    ) -> None:
        self.config = config
        self.install_signals = install_signals
        self.stop_event, self.reload_event = asyncio.Event(), asyncio.Event()
        self.started_at = time.time()
        self.events = events = EventLog()
        self.clock = clock or ClockWatch()
        self.clock.events = events
        self.queue = IngestQueue(config.ingest, events)
        self.tags = TagState(config.devices)
        self.buffer = Buffer(config.storage, agent_id=config.agent.id)
        # Default topics until the sender sets its uplink's (the next line).
        defaults = TopicTemplates.create(site=config.agent.site, agent=config.agent.id)
        hold_mark = HoldMark(config.agent.state_dir / HOLD_MARK)
        self.staging = OutboxStaging(self.buffer, defaults, events, hold_mark=hold_mark)
        self.machines = MachineSet(self.buffer, config.reporting, events)
        self.contracts = ContractDesk(
            self.machines,
            self.staging,
            self.buffer,
            allowed_lateness_s=config.reporting.allowed_lateness_s,
            state_dir=config.agent.state_dir,
            events=events,
        )
        self.sender = Sender(
            config, self.buffer, self.staging, self.tags.latest, commands=self.contracts.submit
        )
        evidence.attach(self.buffer, config, self.staging.topics)
        self.telemetry = TelemetryPump(engine_for(config), self.staging, self.clock, events)
        self.links = LinkSupervisor(self.queue)
        self.reporter = Reporter(
            self.machines,
            self.staging,
            self.buffer,
            events=events,
            contracts=self.contracts,
            confirmations=self.links.diagnostics,
        )
        self.dispatcher = Dispatcher(
            buffer=self.buffer,
            tags=self.tags,
            telemetry=self.telemetry,
            machines=self.machines,
            staging=self.staging,
            clock=self.clock,
            events=events,
            on_comms=self.sender.device_comms,
            contracts=self.contracts,
        )
        self.watch = Watch(self.buffer, self.clock, events)
        self.health = HealthCollector(state_dir=config.agent.state_dir)
        for slot, provider in (
            ("buffer", self.buffer.stats),
            ("uplink", self.sender.state),
            ("devices", lambda: device_diagnostics(self.links, self.tags)),
            ("events", events.snapshot),
            ("pipeline", lambda: {**self.queue.figures(), **self.staging.figures()}),
        ):
            self.health.provide(slot, provider)
        self.health_report = HealthReport(self.health, self.staging, self._status_line)
        self.status = StatusFile(self, config.agent.state_dir / "status.json")
        # Stages that run on a timer whatever the devices do; a dispatcher idle because
        # every PLC is off is not a hang, so it is not a stage.
        self.heartbeat = sdnotify.Heartbeat(
            max(60.0, 3 * config.reporting.interval_s, 3 * config.agent.status_interval_s)
        )

    @property
    def uplink(self) -> Uplink:
        """The uplink in force (replaced when ``[mqtt]`` changes)."""
        return self.sender.uplink

    async def run(self) -> int:
        """Start everything, wait for a stop signal, stop cleanly; return the exit code."""
        cfg = self.config
        cfg.agent.state_dir.mkdir(parents=True, exist_ok=True)
        await self.buffer.open()
        self.staging.recover_hold()  # messages a kill -9 took with it, counted
        await self.machines.start(cfg.machines, cfg.contracts)
        await self.contracts.start()
        # The rules these numbers are computed with, signed before any record they govern.
        evidence.stage_audit(self.staging, cfg, "start")
        await self.staging.flush()
        tuning.settle_heap()
        if self.install_signals:
            signals.install(self.stop_event, self.reload_event)
        self.sender.start()
        await self.links.apply(cfg.devices)
        beat = self.heartbeat.beat
        self.heartbeat.register("status")
        self.heartbeat.register("reporter")
        loops: dict[str, Coroutine[Any, Any, None]] = {
            "dispatcher": self.dispatcher.run(self.queue),
            "reporter": self.reporter.run(cfg.reporting.interval_s, lambda: beat("reporter")),
            "health": self.health_report.run(lambda: self.config.health.interval_s),
            "telemetry": self.telemetry.run(cfg.telemetry.interval_s),
            "status": self.status.run(
                lambda: self.config.agent.status_interval_s, lambda: beat("status")
            ),
            "reload": self._reload_loop(),
            "commands": self.contracts.run_commands(),
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

    def request_stop(self) -> None:
        """Ask the runtime to stop (used by the demo and tests)."""
        self.stop_event.set()

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        await self.links.stop()
        await self.dispatcher.drain(self.queue)  # what the drivers already handed over
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
        try:
            await self.sender.stop()  # sends what the outbox holds, within its timeout
        except Exception as exc:
            self.events.enter(Event.FLUSH_FAILED, "uplink_stop", exc_info=exc)
        await self.staging.close()  # stores what acks made room for; counts the rest
        await write_final_status(self.status.path, self.status.parts)
        await self.buffer.close()
        log.info("Agent stopped id=%s", self.config.agent.id)

    def _status_line(self) -> str:
        backlog = self.sender.state().get("backlog")
        return f"devices up {self.tags.devices_up()}/{len(self.tags.comms)}, backlog {backlog}"

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

        Every part compares by value and replaces only what changed: links are stopped
        (and awaited) before their replacements open the same endpoints, machines with
        an unchanged KPI profile keep their live calculators, pending telemetry is
        published before its engine is replaced, the uplink restarts only for ``[mqtt]``.
        """
        try:
            new = await asyncio.to_thread(load_config_compact, self.config.file)
        except ConfigError as exc:
            self.events.occurred(Event.RELOAD_REJECTED, detail=str(exc))
            return False
        old = self.config
        if (new.storage, new.agent.state_dir, new.agent.id) != (
            old.storage,
            old.agent.state_dir,
            old.agent.id,
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
        await self.reporter.retire(
            await self.machines.reload(cfg.machines, cfg.reporting, cfg.contracts)
        )
        await self.contracts.apply(cfg.contracts)
        if (cfg.publish, cfg.telemetry) != (old.publish, old.telemetry):
            await self.telemetry.replace(engine_for(cfg))
        await self.sender.reconfigure(old, cfg)
        evidence.follow_topics(self.buffer, self.staging.topics)
        evidence.stage_audit(self.staging, cfg, "reload")
        await self.staging.flush()
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
