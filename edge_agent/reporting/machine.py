"""Live machines: each machine's sample builder and streaming calculator.

:class:`MachineSet` holds a :class:`LiveMachine` per configured machine and an
index of which machines read which device, so the dispatcher visits only the
machines a batch concerns. A machine is restored from its saved calculator state
when the KPI profile it was saved with is unchanged.

Reload (:meth:`MachineSet.reload`) compares machines by value: an unchanged machine
keeps everything (builder, calculator, open windows), so it loses no time; a machine
whose KPI profile is unchanged keeps its live calculator (only a changed signal
mapping gets a new sample builder); a machine whose profile changed, or that was
removed, is *retired*: the reporter closes its open windows at the reload instant
with the known time counted (see :meth:`~edge_agent.reporting.reporter.Reporter.retire`).
The replacement calculator of a changed profile reports the rest of those windows
as ``<window>~<reload instant>``, ``[reload, end)``, so both parts keep their own
identity and their components add up to the whole window.

Contracts (``[contracts.NAME]``): a machine opens each contract's KPI window (see
:func:`~edge_agent.contracts.book.chunk_at`) on the calculator whose profile is the
machine's profile on the contract's service hours: its own calculator when that is
its own profile (``calendar = "machine"``), else a *service calculator* fed the same
samples (one per distinct service profile, saved and restored with the machine).
The stop events of those calculators are kept for the contracts' response times.

The sample journal: every sample a machine's calculator is fed (including the
"unknown" samples below) is queued for the buffer's ``samples`` table, numbered per
machine (``journal_n``, saved with the calculator state); a restore cuts the journal
back to the restored state, so it holds exactly what the calculator holds
(:mod:`edge_agent.reporting.journal`).

Guarantees: time the agent was not running is never counted as machine time. A
start after a crash feeds a ``quality = "bad"`` sample just after the last sample
processed before it (so the outage is unknown time), and :meth:`MachineSet.mark_unknown`
does the same on a clean stop.

Size: over 400 lines because the live machine set (restore, feed, confirm, reload)
mutates one MachineSet; record staging is in reporter.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_agent.buffer import Buffer
from edge_agent.config import ReportingConfig
from edge_agent.contracts import Contract, service_profile
from edge_agent.contracts.book import chunk_at
from edge_agent.kpi import (
    MachineCalculator,
    MachineState,
    Sample,
    SampleQuality,
    StopEvent,
    profile_hash,
)
from edge_agent.kpi.calendar import ReportWindow, windows_containing
from edge_agent.kpi.timeutil import format_instant
from edge_agent.machines import AnswerWatch, MachineConfig, SampleBuilder
from edge_agent.model import Confirmation, Reading
from edge_agent.ops.events import Event, EventLog
from edge_agent.reporting.journal import journal_row

log = logging.getLogger("edge_agent.reporting")

#: Key of the machine's own calculator among the calculators contracts use.
MAIN = "main"


def state_key(name: str) -> str:
    """Key of a machine's saved calculator state in the buffer."""
    return f"calc:{name}"


@dataclass(slots=True)
class LiveMachine:
    """One machine: its sample builder, calculator, open windows and current state."""

    config: MachineConfig
    builder: SampleBuilder
    calc: MachineCalculator
    window_ends: dict[str, float] = field(default_factory=dict)
    last_t: float | None = None
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    finals: set[str] = field(default_factory=set)
    # Set when this calculator replaced one with another profile (see module docstring),
    # with the final records of today's window its predecessors published (status only).
    reconfigured_at: float | None = None
    today_before_reload: list[dict[str, Any]] = field(default_factory=list)
    # Contracts: (calculator key, contract) per contract on this machine, the service
    # calculators by key, their final windows, and stop events kept for the contracts.
    contracts: list[tuple[str, Contract]] = field(default_factory=list)
    service: dict[str, MachineCalculator] = field(default_factory=dict)
    service_finals: dict[str, set[str]] = field(default_factory=dict)
    contract_stops: list[tuple[str, StopEvent]] = field(default_factory=list)
    # The machine's acknowledge / arrive PLC signals, when it has any.
    answer_watch: AnswerWatch | None = None
    # Samples fed to the calculator so far (the sample journal's n; saved with the state).
    journal_n: int = 0

    def __post_init__(self) -> None:
        self.watch_answers_of(self.config)

    def watch_answers_of(self, mc: MachineConfig) -> None:
        """(Re)build the watch of the machine's answer signals (after a reload too)."""
        self.answer_watch = AnswerWatch(mc) if mc.answer_refs else None

    def calculator(self, key: str) -> MachineCalculator:
        """The machine's own calculator (``main``) or a service calculator."""
        return self.calc if key == MAIN else self.service[key]

    def open_windows(self, rep: ReportingConfig, t: float) -> None:
        """Open the report windows that hold ``t`` (cheap: recomputed only when one ends)."""
        for kind in rep.windows:
            if t < self.window_ends.get(kind, float("-inf")):
                continue
            windows = windows_containing(self.config.kpi, kind, t)
            for w in windows:
                self._open(w)
            # Outside every shift there is no window: look again a minute later.
            self.window_ends[kind] = min((w.end for w in windows), default=t + 60.0)
        for key, contract in self.contracts:
            slot = f"contract:{contract.name}"
            if t < self.window_ends.get(slot, float("-inf")):
                continue
            t_ms = round(t * 1000)
            chunk = chunk_at(contract, t_ms)
            if chunk is None:
                # Before an explicit period: look again at its start (or a minute later).
                start = contract.start_ms
                self.window_ends[slot] = start / 1000 if start and start > t_ms else t + 60.0
                continue
            w = ReportWindow(chunk.name, chunk.start_ms / 1000, chunk.end_ms / 1000)
            self._open(w, self.calculator(key))
            self.window_ends[slot] = w.end

    def _open(self, w: ReportWindow, calc: MachineCalculator | None = None) -> None:
        calc = self.calc if calc is None else calc
        at = self.reconfigured_at
        if at is not None and w.start < at < w.end:
            # The part before the reload was reported by the calculator this one replaced.
            name = f"{w.name}~{format_instant(round(at * 1000))}"
            calc.open_window(name, at, w.end)
        else:
            calc.open_window(w.name, w.start, w.end)

    def add(self, rep: ReportingConfig, sample: Sample) -> list[StopEvent]:
        """Feed one sample; returns the stop-event updates it caused."""
        self.open_windows(rep, sample.t)
        events = self.calc.add(sample)
        self.last_t = sample.t
        if self.contracts:
            if any(key == MAIN for key, _ in self.contracts):
                self.contract_stops.extend((MAIN, ev) for ev in events)
            for key, calc in self.service.items():
                self.contract_stops.extend((key, ev) for ev in calc.add(sample))
        return events

    def add_unknown(self, sample: Sample) -> None:
        """Feed a ``quality = "bad"`` sample to every calculator (time we know nothing of)."""
        self.calc.add(sample)
        for calc in self.service.values():
            calc.add(sample)

    @property
    def state(self) -> MachineState:
        """Running, stopped or unknown, as the calculator's live tracker has it."""
        return self.calc.live.state

    @property
    def fault(self) -> int | None:
        """The fault code while stopped with one, else None."""
        return self.calc.live.fault or None

    @property
    def since(self) -> float | None:
        """Since when (epoch seconds) the machine is in this state and fault."""
        return self.calc.live.since

    def state_source(self) -> tuple[str, Callable[[], dict[str, Any]]]:
        """Key and snapshot of this machine's saved state, for rows derived from it."""
        return state_key(self.config.name), self.saved_state

    def saved_state(self) -> dict[str, Any]:
        """What :meth:`MachineSet.restore` needs to continue after a restart."""
        return {
            "profile_hash": profile_hash(self.config.kpi),
            "last_t": self.last_t,
            "reconfigured_at": self.reconfigured_at,
            "journal_n": self.journal_n,
            "state": self.calc.to_state(),
            "service": {key: calc.to_state() for key, calc in self.service.items()},
        }

    def use_contracts(
        self,
        contracts: Sequence[Contract],
        saved: Mapping[str, Any] | None,
        allowed_lateness_s: float,
    ) -> None:
        """Set the contracts on this machine; service calculators kept, restored or new."""
        profiles: dict[str, Any] = {}
        pairs: list[tuple[str, Contract]] = []
        for contract in contracts:
            profile = service_profile(contract, self.config.kpi)
            key = MAIN if profile == self.config.kpi else profile_hash(profile)[:16]
            if key != MAIN:
                profiles[key] = profile
            pairs.append((key, contract))
        service: dict[str, MachineCalculator] = {}
        for key, profile in profiles.items():
            calc = self.service.get(key)
            state = (saved or {}).get(key)
            if calc is None and state is not None:
                try:
                    calc = MachineCalculator.from_state(profile, state)
                except Exception:
                    log.exception(
                        "Discarding unreadable service calculator state machine=%s",
                        self.config.name,
                    )
            if calc is None:
                calc = MachineCalculator(profile, allowed_lateness_s=allowed_lateness_s)
            service[key] = calc
        self.service = service
        self.service_finals = {k: self.service_finals.get(k, set()) for k in service}
        self.contracts = pairs
        for slot in [k for k in self.window_ends if k.startswith("contract:")]:
            del self.window_ends[slot]


class MachineSet(Mapping[str, LiveMachine]):
    """The live machines by name, and which machines read which device.

    Args:
        buffer: Where calculator state is saved and restored from.
        reporting: The ``[reporting]`` section (windows, lateness, contract period).
        events: Where reconfigured machines are counted and logged.
    """

    def __init__(
        self, buffer: Buffer, reporting: ReportingConfig, events: EventLog | None = None
    ) -> None:
        self.buffer = buffer
        self.reporting = reporting
        self.events = events or EventLog()
        self._machines: dict[str, LiveMachine] = {}
        self.by_device: dict[str, list[LiveMachine]] = {}
        self.contracts: Mapping[str, Contract] = {}

    def __getitem__(self, name: str) -> LiveMachine:
        return self._machines[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._machines)

    def __len__(self) -> int:
        return len(self._machines)

    async def start(
        self,
        configs: Mapping[str, MachineConfig],
        contracts: Mapping[str, Contract] | None = None,
    ) -> None:
        """Build (or restore) every configured machine, with the contracts on it."""
        self.contracts = contracts or {}
        for name, mc in configs.items():
            self._machines[name] = await self.restore(mc)
        self._index()

    def _contracts_of(self, machine: str) -> list[Contract]:
        return [c for c in self.contracts.values() if machine in c.machines]

    async def restore(self, mc: MachineConfig, *, at: float | None = None) -> LiveMachine:
        """A machine continued from its saved state, or a fresh one.

        A saved state of another profile, or of a machine retired by a reload, means
        windows of that name were reported by another calculator: the fresh one
        reports the rest of them under their own names (``reconfigured_at``).
        """
        saved = await self.buffer.load_state(state_key(mc.name))
        calc: MachineCalculator | None = None
        if saved is not None and saved.get("profile_hash") == profile_hash(mc.kpi):
            try:
                calc = MachineCalculator.from_state(mc.kpi, saved["state"])
            except Exception:
                log.exception("Discarding unreadable calculator state machine=%s", mc.name)
        lateness = self.reporting.allowed_lateness_s
        if calc is None:
            calc = MachineCalculator(mc.kpi, allowed_lateness_s=lateness)
            lm = LiveMachine(config=mc, builder=SampleBuilder(mc), calc=calc)
            lm.journal_n = await self.buffer.journal_end(mc.name, None)
            if saved is not None:
                lm.reconfigured_at = time.time() if at is None else at
            lm.use_contracts(self._contracts_of(mc.name), None, lateness)
            return lm
        lm = LiveMachine(config=mc, builder=SampleBuilder(mc), calc=calc)
        kept = (saved or {}).get("journal_n")
        lm.journal_n = await self.buffer.journal_end(
            mc.name, int(kept) if isinstance(kept, int) else None
        )
        lm.use_contracts(self._contracts_of(mc.name), (saved or {}).get("service"), lateness)
        # Windows already final in the saved state had their final record committed before
        # the state was saved: not to be re-sent as "so far" records every round.
        lm.finals = set(calc.window_names(final=True))
        lm.service_finals = {k: set(c.window_names(final=True)) for k, c in lm.service.items()}
        if saved is not None and saved.get("last_t") is not None:
            # Restart after a crash: from the last sample we processed until the first new
            # one, we know nothing. Say so explicitly rather than hold the old state.
            t = float(saved["last_t"]) + 0.001
            self._unknown(lm, Sample(t=t, quality=SampleQuality.BAD, mono_s=None, synced=None))
        if saved is not None and saved.get("reconfigured_at") is not None:
            lm.reconfigured_at = float(saved["reconfigured_at"])
        return lm

    def _index(self) -> None:
        """Which machines read which device, so a batch only visits its machines."""
        index: dict[str, list[LiveMachine]] = {}
        for lm in self._machines.values():
            devices = {*lm.config.devices, *(r.device for r in lm.config.answer_refs)}
            for dev in sorted(devices):
                index.setdefault(dev, []).append(lm)
        self.by_device = index

    def watch_answers(
        self, machines: Sequence[LiveMachine], batch: list[Reading]
    ) -> list[tuple[LiveMachine, str, float]]:
        """Rising edges of the machines' acknowledge / arrive signals in one batch."""
        out: list[tuple[LiveMachine, str, float]] = []
        for lm in machines:
            if lm.answer_watch is not None:
                out.extend((lm, kind, ts) for kind, ts in lm.answer_watch.update(batch))
        return out

    def feed(
        self, machines: Sequence[LiveMachine], batch: list[Reading], synced: bool | None
    ) -> list[tuple[LiveMachine, StopEvent]]:
        """Turn one device's batch into samples of the machines reading it."""
        t = max(r.ts for r in batch)
        mono = max(r.mono for r in batch)
        out: list[tuple[LiveMachine, StopEvent]] = []
        for lm in machines:
            if not lm.builder.update(batch):
                continue
            sample = lm.builder.sample(t=t, mono=mono, synced=synced)
            out.extend((lm, ev) for ev in self._add(lm, sample))
        return out

    def _add(self, lm: LiveMachine, sample: Sample) -> list[StopEvent]:
        """Feed a sample to the machine and journal it (what the calculator was fed)."""
        events = lm.add(self.reporting, sample)
        self._journal(lm, sample)
        return events

    def _unknown(self, lm: LiveMachine, sample: Sample) -> None:
        lm.add_unknown(sample)
        self._journal(lm, sample)

    def _journal(self, lm: LiveMachine, sample: Sample) -> None:
        lm.journal_n += 1
        self.buffer.add_samples([journal_row(lm.config.name, lm.journal_n, sample)])

    def confirm(
        self, machines: Sequence[LiveMachine], confirmation: Confirmation, synced: bool | None
    ) -> list[tuple[LiveMachine, StopEvent]]:
        """A report-by-exception device confirmed its last values: a sample where one is due."""
        out: list[tuple[LiveMachine, StopEvent]] = []
        t, mono = confirmation.ts, confirmation.mono
        for lm in machines:
            if lm.builder.confirm(confirmation):
                sample = lm.builder.sample(t=t, mono=mono, synced=synced)
                out.extend((lm, ev) for ev in self._add(lm, sample))
        return out

    def mark_unknown(self, now: float, mono: float, synced: bool | None) -> None:
        """Our own downtime is unknown, not machine downtime: a bad sample for every machine."""
        for lm in self._machines.values():
            self._unknown(lm, Sample(t=now, quality=SampleQuality.BAD, mono_s=mono, synced=synced))

    async def reload(
        self,
        configs: Mapping[str, MachineConfig],
        reporting: ReportingConfig,
        contracts: Mapping[str, Contract] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> Retired:
        """Apply a reloaded ``[machines]`` (see the module docstring); returns the retired ones.

        The swap itself does not await: no sample reaches a machine between the
        reload instant and its replacement.
        """
        if contracts is not None:
            self.contracts = contracts
        replacements: dict[str, LiveMachine] = {}
        for name, mc in configs.items():
            current = self._machines.get(name)
            if current is None:
                replacements[name] = await self.restore(mc, at=clock())
            elif profile_hash(current.config.kpi) != profile_hash(mc.kpi):
                fresh = MachineCalculator(mc.kpi, allowed_lateness_s=reporting.allowed_lateness_s)
                builder = SampleBuilder(mc, carry=current.builder)
                replacements[name] = LiveMachine(config=mc, builder=builder, calc=fresh)
                replacements[name].journal_n = current.journal_n  # one journal per machine
                replacements[name].use_contracts(
                    self._contracts_of(name), None, reporting.allowed_lateness_s
                )
        at = clock()
        retired: list[LiveMachine] = []
        for name in [m for m in self._machines if m not in configs]:
            retired.append(self._machines.pop(name))
            self.events.occurred(Event.MACHINE_RECONFIGURED, name, change="removed")
        for name, mc in configs.items():
            current = self._machines.get(name)
            new = replacements.get(name)
            if new is not None:
                if current is not None:
                    retired.append(current)
                    new.reconfigured_at = at
                    self.events.occurred(Event.MACHINE_RECONFIGURED, name, change="profile")
                self._machines[name] = new
            elif current is not None and current.config != mc:
                if _signals(current.config) != _signals(mc):
                    current.builder = SampleBuilder(mc, carry=current.builder)
                if current.config.answer_refs != mc.answer_refs or (
                    current.config.acknowledge,
                    current.config.arrive,
                ) != (mc.acknowledge, mc.arrive):
                    current.watch_answers_of(mc)
                current.config = mc
                log.info("Machine updated, calculator kept machine=%s", name)
        self.reporting = reporting
        for name, lm in self._machines.items():
            if name not in replacements:
                lm.use_contracts(self._contracts_of(name), None, reporting.allowed_lateness_s)
        self._index()
        return Retired(at=at, machines=retired)


@dataclass(frozen=True, slots=True)
class Retired:
    """Machines a reload took out of service at ``at``, for the reporter to close."""

    at: float
    machines: list[LiveMachine]


def _signals(mc: MachineConfig) -> tuple[Any, ...]:
    """What the sample builder depends on."""
    return (mc.run, mc.fault, mc.good, mc.total, mc.signal_max_age_s)
