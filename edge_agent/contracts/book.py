"""A contract's running book: its KPI windows, breakdowns, states, alerts and period records.

:class:`ContractBook` is what the runtime keeps per contract between reporting
rounds. It is fed, per machine, the components of the contract's own KPI windows
(*chunks*: the period itself, or for ``rolling_30d`` each local day, see
:func:`chunk_at`) exactly as the machine's calculator reports them (so far, final,
revised), and the machine's stop events. Each :meth:`ContractBook.round` then:

1. closes every period past its end plus the allowed lateness: a **final period
   record** (revision 0) evaluated at ``end + lateness``; later, a **revision** when
   its content changes (late data revised a chunk, an answer came in, a response
   bound passed after the close; such an event also moves the record's ``at``);
2. evaluates the current period at the round's instant: the **status**;
3. emits an **alert** when a level enters ``at_risk`` or ``breached`` (a state
   getting worse) and when a response bound is crossed unanswered, dated at the
   crossing instant ``start + bound`` (spec §3.13), not at the round that saw it
   (a response-time level's breach is that crossing alert, not a second one).

Every record carries the contract hash and each machine's KPI profile hash (via
:func:`~edge_agent.contracts.status.evaluate_contract`). Alerts have a stable
``alert_id`` so a consumer drops the copy a restart may send again.

:meth:`ContractBook.to_state` / :meth:`ContractBook.from_state` persist everything
a restart needs; the chunks' own components come back from the calculators too.
Pure: no I/O, no clock.

Size: over 400 lines because one contract's running book and its persistence
(to_state/from_state must cover exactly what round() keeps); evaluation is in status.py
and compliance.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from edge_agent.contracts.compliance import State
from edge_agent.contracts.model import Contract, Kpi, PeriodKind, ResponseTo
from edge_agent.contracts.periods import Period, period_at
from edge_agent.contracts.response import Breakdown, bound_crossings
from edge_agent.contracts.service import remaining_service_s
from edge_agent.contracts.status import ContractStatus, evaluate_contract, in_period
from edge_agent.contracts.sums import MachineInput
from edge_agent.kpi.calendar import Planner, local_ms
from edge_agent.kpi.events import StopClass
from edge_agent.kpi.profile import KpiProfile, profile_hash
from edge_agent.kpi.record import COUNT_FIELDS, TIME_FIELDS
from edge_agent.kpi.timeutil import format_instant, ms_to_datetime

CHUNK_PREFIX = "contract:"
STATE_VERSION = 1
_WORSE = {State.ON_TRACK: 0, State.AT_RISK: 1, State.BREACHED: 2}
_KEEP_MS = 7 * 86_400_000


@dataclass(frozen=True, slots=True)
class Chunk:
    """One KPI window of a contract (UTC epoch milliseconds)."""

    name: str
    start_ms: int
    end_ms: int


def is_chunk(window: str) -> bool:
    """Whether a KPI window name is a contract's window."""
    return window.startswith(CHUNK_PREFIX)


def chunk_at(contract: Contract, t_ms: int) -> Chunk | None:
    """The contract's KPI window holding ``t_ms`` (None outside every period).

    The window is the period itself, except for ``rolling_30d``, whose periods
    overlap: there each local day is a window and a period sums 30 of them.
    """
    period = period_at(contract, t_ms)
    if period is None:
        return None
    if contract.period is not PeriodKind.ROLLING_30D:
        name = contract.window_name or f"{CHUNK_PREFIX}{contract.name}:{period.name}"
        return Chunk(name, period.start_ms, period.end_ms)
    zone = ZoneInfo(contract.timezone)
    day = ms_to_datetime(t_ms).astimezone(zone).date()
    return Chunk(
        f"{CHUNK_PREFIX}{contract.name}:day:{day.isoformat()}",
        local_ms(zone, day, 0),
        local_ms(zone, day + dt.timedelta(days=1), 0),
    )


@dataclass(slots=True)
class _Entry:
    start_ms: int
    end_ms: int
    components: dict[str, Any]
    final: bool


@dataclass(slots=True)
class _Tracked:
    """A period seen by a round: its bounds and the record last published once closed."""

    start_ms: int
    end_ms: int
    revision: int = 0
    published: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RoundOutput:
    """What one round produced: the status, alerts, and final or revised period records."""

    status: dict[str, Any] | None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    periods: list[dict[str, Any]] = field(default_factory=list)
    live: ContractStatus | None = None


def _components(comp: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: comp[k] for k in TIME_FIELDS + COUNT_FIELDS}
    out["flags"] = list(comp.get("flags", ()))
    return out


class ContractBook:
    """Everything one contract keeps between rounds.

    Args:
        contract: The contract.
        profiles: Each machine's KPI profile on the contract's service hours.
        allowed_lateness_s: How long after its end a period is closed (the same
            lateness as the KPI windows, so its windows are final by then).
        keep_final_s: How long a closed period is kept for revisions.
    """

    def __init__(
        self,
        contract: Contract,
        profiles: Mapping[str, KpiProfile],
        *,
        allowed_lateness_s: float,
        keep_final_s: float = _KEEP_MS / 1000,
    ) -> None:
        missing = set(contract.machines) - set(profiles)
        if missing:
            raise ValueError(f"no service profile for {sorted(missing)}")
        self.contract = contract
        self.profiles = {m: profiles[m] for m in contract.machines}
        self.planners = {m: Planner(p) for m, p in self.profiles.items()}
        self.lateness_ms = round(allowed_lateness_s * 1000)
        self.keep_ms = round(keep_final_s * 1000)
        self.chunks: dict[str, dict[str, _Entry]] = {m: {} for m in contract.machines}
        self.breakdowns: dict[str, tuple[str, int]] = {}
        self.current: str | None = None
        self.states: dict[str, str] = {}
        self.entered: dict[str, int] = {}
        self.tracked: dict[str, _Tracked] = {}
        self.last_round_ms: int | None = None

    # -- input -----------------------------------------------------------------------
    def take(
        self,
        machine: str,
        name: str,
        start_ms: int,
        end_ms: int,
        components: Mapping[str, Any],
        *,
        final: bool,
    ) -> None:
        """Components of one of this contract's windows on ``machine`` (so far or final)."""
        entries = self.chunks.get(machine)
        if entries is None or not self._mine(name):
            return
        entries[name] = _Entry(start_ms, end_ms, _components(components), final)
        # The period this window belongs to is closed in due time even when no round
        # saw it live (rolling: the period that ends with this day).
        period = period_at(self.contract, start_ms)
        if period is not None:
            self.tracked.setdefault(period.name, _Tracked(period.start_ms, period.end_ms))

    def _mine(self, name: str) -> bool:
        # After a reload that changed a machine's profile the rest of a window is reported
        # as "<window>~<reload instant>": both parts are the contract's.
        c = self.contract
        if c.window_name is not None and name.split("~", 1)[0] == c.window_name:
            return True
        return name.startswith(f"{CHUNK_PREFIX}{c.name}:")

    def stop(self, machine: str, event_id: str, start_ms: int, cls: StopClass, code: int) -> None:
        """A stop event on the contract's service hours; provider breakdowns are kept."""
        profile = self.profiles.get(machine)
        if profile is None or cls is not StopClass.BREAKDOWN or profile.is_customer_code(code):
            return
        if period_at(self.contract, start_ms) is None:
            return  # before or after an explicit period: no response term applies
        self.breakdowns[event_id] = (machine, start_ms)

    # -- evaluation ----------------------------------------------------------------
    def _inputs(self, period: Period, at_ms: int) -> list[MachineInput]:
        out: list[MachineInput] = []
        for machine, profile in self.profiles.items():
            total = dict.fromkeys(TIME_FIELDS, 0.0) | dict.fromkeys(COUNT_FIELDS, 0)
            flags: set[str] = set()
            for e in self.chunks[machine].values():
                if e.start_ms >= period.start_ms and e.end_ms <= period.end_ms:
                    for k in TIME_FIELDS + COUNT_FIELDS:
                        total[k] += e.components[k]
                    flags.update(e.components["flags"])
            # Service time no window reported (the machine sent nothing, the agent was
            # down before the window existed) is unknown time: every second is accounted.
            planner = self.planners[machine]
            expected = planner.planned_length(period.start_ms, min(at_ms, period.end_ms))
            missing = expected - round(total["planned_time_s"] * 1000)
            if missing > 0:
                total["planned_time_s"] += missing / 1000
                total["unknown_time_s"] += missing / 1000
            out.append(
                MachineInput(
                    machine=machine,
                    components=total | {"flags": sorted(flags)},
                    ideal_cycle_time_s=profile.ideal_cycle_time_s,
                    remaining_s=remaining_service_s(planner, period, at_ms),
                    profile_hash=profile_hash(profile),
                )
            )
        return out

    def _breakdowns(self, answers: Mapping[str, tuple[int | None, int | None]]) -> list[Breakdown]:
        out: list[Breakdown] = []
        for event_id, (machine, start) in self.breakdowns.items():
            ack, arrive = answers.get(event_id, (None, None))
            out.append(
                Breakdown(
                    event_id=event_id,
                    start_ms=start,
                    acknowledged_ms=ack,
                    arrived_ms=arrive,
                    machine=machine,
                )
            )
        return out

    def evaluate(
        self,
        period: Period,
        at_ms: int,
        answers: Mapping[str, tuple[int | None, int | None]],
        *,
        final: bool = False,
    ) -> ContractStatus:
        """The contract's status for ``period`` at ``at_ms`` from what the book holds."""
        return evaluate_contract(
            self.contract,
            period,
            self._inputs(period, at_ms),
            at_ms=at_ms,
            final=final,
            breakdowns=self._breakdowns(answers),
        )

    def round(
        self, now_ms: int, answers: Mapping[str, tuple[int | None, int | None]]
    ) -> RoundOutput:
        """Close due periods, evaluate the current one, emit alerts (see the module docstring).

        Args:
            now_ms: The round's instant.
            answers: ``event_id -> (acknowledged_ms, arrived_ms)`` of the stop events.
        """
        alerts: list[dict[str, Any]] = []
        periods = self._close_and_revise(now_ms, answers)
        breakdowns = self._breakdowns(answers)
        since = self.last_round_ms if self.last_round_ms is not None else now_ms
        alerts.extend(self._crossings(breakdowns, since, now_ms))
        period = period_at(self.contract, now_ms)
        status: dict[str, Any] | None = None
        live: ContractStatus | None = None
        if period is not None:
            if self.current != period.name:
                self.current, self.states = period.name, {}
            self.tracked.setdefault(period.name, _Tracked(period.start_ms, period.end_ms))
            live = self.evaluate(period, now_ms, answers)
            status = live.as_dict()
            alerts.extend(self._transitions(live))
        self.last_round_ms = now_ms
        self._prune(now_ms)
        return RoundOutput(status=status, alerts=alerts, periods=periods, live=live)

    def _close_and_revise(
        self, now_ms: int, answers: Mapping[str, tuple[int | None, int | None]]
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name, rec in self.tracked.items():
            close_at = rec.end_ms + self.lateness_ms
            if close_at > now_ms:
                continue
            period = Period(name, rec.start_ms, rec.end_ms)
            at = self._record_instant(period, close_at, now_ms, answers)
            doc = self.evaluate(period, at, answers, final=True).as_dict()
            if rec.published is None:
                rec.published = doc
                out.append(doc | {"revision": 0})
            elif doc != rec.published:
                rec.revision += 1
                rec.published = doc
                out.append(doc | {"revision": rec.revision})
        return out

    def _record_instant(
        self,
        period: Period,
        close_at: int,
        now_ms: int,
        answers: Mapping[str, tuple[int | None, int | None]],
    ) -> int:
        """``end + lateness``, moved to the latest answer or bound crossing of the period since.

        Responses are the only figures that change with the evaluation instant; pinning
        it to the events that change them keeps a closed period's record stable between
        them (and the same for everybody who recomputes it).
        """
        at = close_at
        terms = [t for t in self.contract.terms if t.kpi is Kpi.RESPONSE_TIME]
        if not terms:
            return at
        for b in in_period(self._breakdowns(answers), period):
            for term in terms:
                to = term.response_to or ResponseTo.ACKNOWLEDGED
                answered = b.answered_ms(to)
                if answered is not None and close_at < answered <= now_ms:
                    at = max(at, answered)
                for level in term.levels:
                    deadline = b.start_ms + round(level.value * 1000)
                    unanswered = answered is None or answered > deadline
                    if unanswered and close_at < deadline <= now_ms:
                        at = max(at, deadline)
        return at

    def _crossings(
        self, breakdowns: list[Breakdown], since: int, now_ms: int
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for term in self.contract.terms:
            if term.kpi is not Kpi.RESPONSE_TIME or term.response_to is None:
                continue
            for level in term.levels:
                bound = round(level.value * 1000)
                for event_id, instant in bound_crossings(
                    breakdowns, term.response_to, bound, since, now_ms
                ):
                    period = period_at(self.contract, self.breakdowns[event_id][1])
                    out.append(
                        {
                            "alert_id": f"{self.contract.name}/{event_id}/{term.name}/{level.name}",
                            "alert": "response_bound_crossed",
                            "contract": self.contract.name,
                            "period": period.name if period else None,
                            "term": term.name,
                            "kpi": term.kpi.value,
                            "level": level.name,
                            "threshold": level.value,
                            "event_id": event_id,
                            "machine": self.breakdowns[event_id][0],
                            "at": format_instant(instant),
                            "state": State.BREACHED.value,
                        }
                    )
        return out

    def _transitions(self, status: ContractStatus) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for term in status.terms:
            for level in term.levels:
                key = f"{term.term}/{level.level}"
                before = State(self.states.get(key, State.ON_TRACK.value))
                now = level.state
                self.states[key] = now.value
                if now not in (State.AT_RISK, State.BREACHED):
                    continue
                if term.kpi is Kpi.RESPONSE_TIME and now is State.BREACHED:
                    continue  # reported by the crossing alert, dated at the crossing
                if _WORSE.get(now, 0) <= _WORSE.get(before, 0):
                    continue
                entry = f"{status.period.name}|{key}|{now.value}"
                n = self.entered.get(entry, 0)
                self.entered[entry] = n + 1
                out.append(
                    {
                        "alert_id": (
                            f"{self.contract.name}/{status.period.name}/{key}/{now.value}/{n}"
                        ),
                        "alert": "level_state",
                        "contract": self.contract.name,
                        "period": status.period.name,
                        "term": term.term,
                        "kpi": term.kpi.value,
                        "level": level.level,
                        "threshold": level.threshold,
                        "at": format_instant(status.at_ms),
                        "previous": before.value,
                        "state": now.value,
                        "so_far": term.so_far,
                        "forecast": term.forecast,
                        "budget": level.budget,
                        "budget_unit": term.kpi.budget_unit,
                        "remaining_service_s": status.sums.remaining_ms / 1000,
                    }
                )
        return out

    def _prune(self, now_ms: int) -> None:
        horizon = now_ms - self.keep_ms - self.lateness_ms
        for name in [n for n, c in self.tracked.items() if c.end_ms < horizon]:
            del self.tracked[name]
        oldest = min((c.start_ms for c in self.tracked.values()), default=now_ms)
        for entries in self.chunks.values():
            for name in [n for n, e in entries.items() if e.end_ms <= oldest]:
                del entries[name]
        starts = [(eid, s) for eid, (_m, s) in self.breakdowns.items() if s < oldest]
        for eid, _s in starts:
            del self.breakdowns[eid]
        for key in [k for k in self.entered if k.split("|", 1)[0] not in self.tracked]:
            del self.entered[key]

    # -- persistence -------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot of the book."""
        return {
            "version": STATE_VERSION,
            "chunks": {
                m: {
                    n: {
                        "start_ms": e.start_ms,
                        "end_ms": e.end_ms,
                        "c": e.components,
                        "final": e.final,
                    }
                    for n, e in entries.items()
                }
                for m, entries in self.chunks.items()
            },
            "breakdowns": {eid: [m, s] for eid, (m, s) in self.breakdowns.items()},
            "current": self.current,
            "states": dict(self.states),
            "entered": dict(self.entered),
            "closed": {
                n: {
                    "start_ms": c.start_ms,
                    "end_ms": c.end_ms,
                    "revision": c.revision,
                    "published": c.published,
                }
                for n, c in self.tracked.items()
            },
            "last_round_ms": self.last_round_ms,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`to_state` output (machines no longer in the contract are dropped).

        Raises:
            ValueError: for a state of another version.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported contract state version {state.get('version')!r}")
        for machine, entries in state["chunks"].items():
            if machine not in self.chunks:
                continue
            for name, e in entries.items():
                self.chunks[machine][name] = _Entry(e["start_ms"], e["end_ms"], e["c"], e["final"])
        self.breakdowns = {
            eid: (m, int(s)) for eid, (m, s) in state["breakdowns"].items() if m in self.profiles
        }
        self.current = state["current"]
        self.states = dict(state["states"])
        self.entered = dict(state["entered"])
        self.tracked = {
            n: _Tracked(c["start_ms"], c["end_ms"], c["revision"], c["published"])
            for n, c in state["closed"].items()
        }
        self.last_round_ms = state["last_round_ms"]
