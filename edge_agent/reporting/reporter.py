"""The reporter: KPI records, state intervals and calculator state on the reporting interval.

Every ``[reporting] interval_s`` :meth:`Reporter.report` stages, for each machine,
the final records of windows past their lateness, revisions of final windows that
late samples changed, and a "so far" record of every open window (cut at now, so
the rest of the window is not reported as unknown); it queues the closed state
intervals for the buffer and saves each calculator's state, so a restart continues
where the agent stopped. The same goes for a machine's service calculators (the
contracts on other service hours than its own); the records of contract KPI
windows are also handed to the contracts (:class:`~edge_agent.reporting.contracts.ContractDesk`),
whose round then stages their status, alerts and period records.

:meth:`Reporter.retire` closes the windows of machines a reload took out of
service (removed, or replaced because their KPI profile changed): every open
window's record, cut at the reload instant, is published as final with the flag
``reconfigured``, so the known time up to the reload is counted.

Guarantees: records and state intervals are committed to the outbox and the buffer
in ONE transaction with the calculator state that produced them (issue 22), so a
``kill -9`` can neither lose drained intervals nor make the restarted calculator
derive a record or stop event again; while they are held because the outbox
cannot take them, the state is not saved either; a round
that fails is logged once with its traceback and counted (event ``flush_failed``,
stage ``report``), retried on the next round, and its recovery logged once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from drivers.base import DeviceDiagnostics
from edge_agent import logtext
from edge_agent.buffer import Buffer, MessageKind
from edge_agent.contracts.book import is_chunk
from edge_agent.kpi import KpiRecord, MachineCalculator
from edge_agent.ops.events import Event, EventLog
from edge_agent.outgoing.derived import StateSource
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.reporting.contracts import ContractDesk
from edge_agent.reporting.machine import LiveMachine, MachineSet, Retired, state_key
from edge_agent.reporting.messages import kpi_data, record_key, window_kind

log = logging.getLogger("edge_agent.reporting")

#: Flag of a record whose window was closed early because a reload retired its machine.
FLAG_RECONFIGURED = "reconfigured"


class Reporter:
    """Stages each machine's records and saves its calculator state.

    Args:
        machines: The live machines.
        staging: Where records are staged and committed.
        buffer: Where state intervals and calculator state go.
        events: Where failed rounds are counted and logged.
        clock: Wall clock (UNIX seconds), injectable for tests.
    """

    def __init__(
        self,
        machines: MachineSet,
        staging: OutboxStaging,
        buffer: Buffer,
        *,
        events: EventLog | None = None,
        clock: Callable[[], float] = time.time,
        contracts: ContractDesk | None = None,
        confirmations: Callable[[], Mapping[str, DeviceDiagnostics]] | None = None,
    ) -> None:
        self.machines = machines
        self.confirmations = confirmations
        self.staging = staging
        self.buffer = buffer
        self.events = events or EventLog()
        self.clock = clock
        self.contracts = contracts

    async def run(self, interval_s: float, beat: Callable[[], None]) -> None:
        """Report every ``interval_s`` seconds until cancelled; ``beat()`` after each round."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.report()
            except Exception as exc:
                self.events.enter(Event.FLUSH_FAILED, "report", exc_info=exc)
            else:
                self.events.leave(Event.FLUSH_FAILED, "report")
            beat()

    async def report(self) -> None:
        """One round: stage and commit records, queue intervals, save calculator state."""
        now = self.clock()
        for lm in self.machines.values():
            self._stage_records(lm, now)
            self.staging.depends_on(lm.state_source())
        if self.contracts:
            self.contracts.round(now)  # its books' states go with this commit
        await self.staging.flush()

    def _stage_records(self, lm: LiveMachine, now: float) -> None:
        records = _due_records(lm.calc, lm.finals, now)
        for key, calc in lm.service.items():
            records.extend(_due_records(calc, lm.service_finals.setdefault(key, set()), now))
            calc.drain_intervals()  # the machine's own calculator keeps the evidence log
        self._stage(lm, records)
        self._queue_intervals(lm)
        if self.contracts:
            for rec in records:
                if is_chunk(rec.name):
                    self.contracts.take(lm.config.name, rec)

    def _stage(
        self, lm: LiveMachine, records: list[KpiRecord], state: StateSource | None = None
    ) -> None:
        staging = self.staging
        state = state or lm.state_source()
        confirmed = self._confirmed_by(lm) if any(not r.final for r in records) else None
        for rec in records:
            data = kpi_data(lm.config, rec)
            if confirmed is not None and not rec.final:
                data["confirmed_by"] = confirmed
            kind = window_kind(data)
            topic = staging.topics.kpi(machine=lm.config.name, window_kind=kind)
            staging.stage(MessageKind.KPI, topic, data, record_key=record_key(data), state=state)
            if kind == "day":
                logtext.log_kpi_flags(lm.config.name, lm.latest.get("today"), data)
                lm.latest["today"] = data
            elif kind == "shift":
                lm.latest["shift"] = data

    def _confirmed_by(self, lm: LiveMachine) -> dict[str, str] | None:
        """How each device the machine reads is confirmed now, or None when not known.

        Issue 23: a flat line on a live subscription (``keepalive``) vs a dead one
        (``lapsed``), visible in the records a dashboard shows.

        Shown on "so far" records only: it describes the moment of the update, not the
        window, so final records and revisions (recomputable from samples) leave it out.
        """
        if self.confirmations is None:
            return None
        diagnostics = self.confirmations()
        return {
            device: diagnostics[device].confirmed_by.value
            for device in sorted(lm.builder.refs_by_device)
            if device in diagnostics
        } or None

    def _queue_intervals(self, lm: LiveMachine, state: StateSource | None = None) -> None:
        intervals: list[Mapping[str, Any]] = [iv.as_dict() for iv in lm.calc.drain_intervals()]
        if intervals:
            # Stored with the state that no longer holds them (see the module docstring).
            self.staging.stage_intervals(lm.config.name, intervals, state or lm.state_source())

    async def retire(self, retired: Retired) -> None:
        """Close the windows of retired machines at the reload instant (see module docstring)."""
        if not retired.machines:
            return
        at = retired.at
        for lm in retired.machines:
            # A later calculator of that name must not take these windows for its own: the
            # retired marker is the state committed with the closing records.
            marker: StateSource = (state_key(lm.config.name), lambda: {"retired_at": at})
            records: list[KpiRecord] = []
            for calc in (lm.calc, *lm.service.values()):
                records += [*calc.close_due(at), *calc.revisions()]
                for name in calc.window_names(final=False):
                    rec = calc.record(name, now=at, so_far=False)  # final: no pending time
                    flags = (*rec.flags, FLAG_RECONFIGURED)
                    records.append(rec.with_meta(final=True, flags=flags))
            self._stage(lm, records, marker)
            self._queue_intervals(lm, marker)
            self.staging.depends_on(marker)
            if self.contracts:
                for rec in records:
                    if is_chunk(rec.name):
                        self.contracts.take(lm.config.name, rec)
        for lm in retired.machines:
            new = self.machines.get(lm.config.name)
            if new is not None and new is not lm:
                # Status: the part of today before the reload stays visible (not wiped).
                today = lm.latest.get("today")
                new.today_before_reload = [*lm.today_before_reload, *([today] if today else [])]
        # When the outbox is full, records, intervals and marker go out with a later flush.
        await self.staging.flush()

    async def save_states(self) -> None:
        """Save every calculator's state and the contracts' (durable); kept in memory when full."""
        for lm in list(self.machines.values()):
            self.staging.depends_on(lm.state_source())
        if self.contracts:
            self.contracts.depends()
        await self.staging.flush()


def _due_records(calc: MachineCalculator, finals: set[str], now: float) -> list[KpiRecord]:
    """Final records now due, revisions, and a "so far" record of every open window."""
    records: list[KpiRecord] = []
    closed = calc.close_due(now)
    finals.update(r.name for r in closed)
    records.extend(closed)
    records.extend(calc.revisions())
    names = calc.window_names()
    finals.intersection_update(names)
    for name in names:
        if name not in finals:
            # "So far": cut at now, so the rest of the window is not reported as unknown.
            records.append(calc.record(name, now=now))
    return records
