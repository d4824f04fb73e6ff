"""The dispatcher: every batch the links read goes to the places that need it.

One task takes items off the :class:`~edge_agent.ingest.queue.IngestQueue` in
order and hands them on:

* comms events to the buffer, the tag state and the event catalogue
  (``device_down``: one line when a device goes down, one when it is back);
* readings to the buffer (batched SQLite writer), the tag state (latest view),
  the telemetry engine (publishing policies) and the machines that read the
  device (samples into their calculators); the stop events those produce are
  staged for the outbox at once.

It is the hot path of a gateway (12,500 values/s): nothing here is done per
value except by the parts it hands the batch to. A Modbus poll that decoded whole
arrives as a :class:`~edge_agent.columns.ColumnPoll` and is handed on as it is: the
tag state and the telemetry of ``every`` devices take its columns without building a
reading per value; the buffer, the machines and per-tag policies see its readings.
"""

from __future__ import annotations

from collections.abc import Callable

from edge_agent import logtext
from edge_agent.buffer import Buffer, MessageKind
from edge_agent.columns import ColumnPoll
from edge_agent.ingest.queue import IngestQueue, Item
from edge_agent.ingest.tags import TagState
from edge_agent.kpi import StopEvent
from edge_agent.model import CommsEvent, CommsState, Confirmation
from edge_agent.ops.clock import ClockWatch
from edge_agent.ops.events import Event, EventLog
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.outgoing.telemetry import TelemetryPump
from edge_agent.reporting.contracts import ContractDesk
from edge_agent.reporting.machine import LiveMachine, MachineSet
from edge_agent.reporting.messages import stop_data


class Dispatcher:
    """Routes ingested items to buffer, tag state, telemetry and machines."""

    def __init__(
        self,
        *,
        buffer: Buffer,
        tags: TagState,
        telemetry: TelemetryPump,
        machines: MachineSet,
        staging: OutboxStaging,
        clock: ClockWatch,
        events: EventLog,
        on_comms: Callable[[str, bool], None] | None = None,
        contracts: ContractDesk | None = None,
    ) -> None:
        self.buffer = buffer
        self.tags = tags
        self.telemetry = telemetry
        self.machines = machines
        self.staging = staging
        self.clock = clock
        self.events = events
        self.on_comms = on_comms
        self.contracts = contracts
        self.processed = 0

    async def run(self, queue: IngestQueue) -> None:
        """Handle items as they arrive, until cancelled."""
        while True:
            await self.handle(await queue.get())

    async def drain(self, queue: IngestQueue) -> None:
        """Handle what is queued now (shutdown, after the links stopped)."""
        while (item := queue.get_nowait()) is not None:
            await self.handle(item)

    async def handle(self, item: Item) -> None:
        """Hand one item on."""
        self.processed += 1
        if isinstance(item, Confirmation):
            # Unchanged values confirmed (report by exception): not stored, no telemetry;
            # each machine on the device gets a sample when the confirmation is its newest.
            confirmed = self.machines.by_device.get(item.device)
            if confirmed:
                synced = self.clock.synced(item.mono)
                await self._stage_stops(self.machines.confirm(confirmed, item, synced))
            return
        if isinstance(item, CommsEvent):
            self.buffer.add_comms(item)
            self.tags.set_comms(item)
            up = item.state is CommsState.UP
            if up:
                self.events.leave(Event.DEVICE_DOWN, item.device)
            else:
                self.events.enter(Event.DEVICE_DOWN, item.device, reason=item.reason)
            if self.on_comms is not None:
                self.on_comms(item.device, up)  # Sparkplug: DBIRTH / DDEATH
            return
        if not item:
            return
        self.buffer.add_readings(item)
        device = item.device if type(item) is ColumnPoll else item[0].device
        self.tags.update(device, item)
        engine = self.telemetry.engine
        if engine is not None:
            engine.ingest(item)
        machines = self.machines.by_device.get(device)
        if not machines:
            return
        readings = item if isinstance(item, list) else list(item)  # built once for both
        synced = self.clock.synced(max(r.mono for r in readings))
        await self._stage_stops(self.machines.feed(machines, readings, synced))
        if self.contracts is not None:
            # A maintenance key switch / "technician present" bit answers the stop in
            # progress (after the batch's samples, so a stop starting in it is known).
            for lm, answer, ts in self.machines.watch_answers(machines, readings):
                await self.contracts.plc_answer(lm.config.name, answer, ts)

    async def _stage_stops(self, stops: list[tuple[LiveMachine, StopEvent]]) -> None:
        """Stage the machines' stop events and commit at once (they are the product)."""
        staging = self.staging
        for lm, event in stops:
            topic = staging.topics.stop(machine=lm.config.name)
            data = stop_data(lm.config, event)
            if self.contracts is not None:
                # Answers (acknowledged_at / arrived_at) travel with every update of the stop.
                data = self.contracts.decorate_stop(data)
            # Committed with the calculator state that closed or opened it (issue 22).
            staging.stage(MessageKind.STOP, topic, data, state=lm.state_source())
            logtext.log_stop(data)
        if len(staging):
            await staging.flush()


__all__ = ["Dispatcher"]
