"""Live stop events and the machine-state interval log, derived on arrival.

:class:`LiveTracker` follows samples that arrive in time order and emits
:class:`StopEvent` updates (started, code changed, ended) for publishing and
closed :class:`StateInterval` records for the per-machine evidence log. It
applies the same hold bound (``max_gap_s``), run-bit precedence and planned-time
rules as the engine, but it is an *arrival-time* view: a sample older than the
newest one seen is ignored here (late data is reflected by revised window
records, never by rewriting published events or intervals). Pure, no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, NamedTuple

from edge_agent.kpi.calendar import Planner
from edge_agent.kpi.profile import KpiProfile
from edge_agent.kpi.sample import Sample
from edge_agent.kpi.timeutil import MS_PER_S, format_instant


class MachineState(enum.Enum):
    """State of a machine on the timeline (spec §3.5)."""

    RUNNING = "running"
    STOPPED = "stopped"
    UNKNOWN = "unknown"


class StopClass(enum.Enum):
    """Classification of a stop event by its planned duration and code (spec §3.6).

    ``PENDING``: open, planned duration so far at most the micro-stop threshold (its
    class is not known yet; KPI records report its time as ``pending_stop_s``).
    ``UNPLANNED``: ended without a planned instant (not counted in any KPI).
    """

    MICRO = "micro"
    BREAKDOWN = "breakdown"
    OTHER = "other"
    PENDING = "pending"
    UNPLANNED = "unplanned"


@dataclass(frozen=True, slots=True, kw_only=True)
class StopEvent:
    """One update of a physical stop event (machine-independent fields).

    ``end`` is None while the event is open; ``cls`` is then provisional.
    ``duration_s`` is the planned duration so far; ``fault`` the first non-zero
    code seen in planned portions, else the first one seen at all (the code the
    state interval carries; 0 = none).
    """

    start: float
    end: float | None
    duration_s: float
    cls: StopClass
    fault: int

    def as_dict(self) -> dict[str, Any]:
        """The published form (``schemas/stop.schema.json``, machine fields added by the caller).

        Instants are RFC 3339 UTC with milliseconds; ``duration_s`` is null while open;
        ``code`` is null without a fault code.
        """
        return {
            "start": format_instant(round(self.start * MS_PER_S)),
            "end": None if self.end is None else format_instant(round(self.end * MS_PER_S)),
            "duration_s": None if self.end is None else self.duration_s,
            "category": self.cls.value,
            "code": self.fault or None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class StateInterval:
    """A closed interval ``[start, end)`` (epoch seconds) in one state with its fault code."""

    start: float
    end: float
    state: MachineState
    fault: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "start": self.start,
            "end": self.end,
            "state": self.state.value,
            "fault": self.fault,
        }


class LiveState(NamedTuple):
    """A machine's state as of its newest sample (what ``edge-agent status`` shows).

    Attributes:
        state: Running, stopped or unknown.
        fault: The fault code while stopped (0 = none; always 0 while running).
        since: Epoch seconds the machine has been in this state (and code), or None
            before the first sample.
    """

    state: MachineState
    fault: int
    since: float | None


class LiveTracker:
    """Arrival-order stop-event and interval tracker for one machine."""

    def __init__(self, profile: KpiProfile, planner: Planner) -> None:
        self._p = profile
        self._planner = planner
        self._gap = round(profile.max_gap_s * 1000)
        self._threshold = round(profile.micro_stop_threshold_s * 1000)
        self.last_t: int | None = None
        self.state = MachineState.UNKNOWN
        self.code = 0
        self.ev_start: int | None = None
        self.ev_d = 0
        self.ev_code = 0
        self.ev_seen = 0
        self.iv_start: int | None = None
        self.iv_state = MachineState.UNKNOWN
        self.iv_code = 0
        self.closed: list[StateInterval] = []

    def _cls(self, *, ended: bool = False) -> StopClass:
        if ended and self.ev_d == 0:
            return StopClass.UNPLANNED
        if self.ev_d <= self._threshold:
            return StopClass.MICRO if ended else StopClass.PENDING
        return StopClass.BREAKDOWN if self.ev_code else StopClass.OTHER

    def _event(self, end: int | None) -> StopEvent:
        return StopEvent(
            start=(self.ev_start or 0) / 1000,
            end=None if end is None else end / 1000,
            duration_s=self.ev_d / 1000,
            cls=self._cls(ended=end is not None),
            fault=self.ev_code or self.ev_seen,
        )

    def _interval(self, a: int, b: int, state: MachineState, code: int) -> None:
        if b <= a:
            return
        if self.iv_start is not None and (state, code) == (self.iv_state, self.iv_code):
            return
        if self.iv_start is not None:
            self.closed.append(
                StateInterval(
                    start=self.iv_start / 1000,
                    end=a / 1000,
                    state=self.iv_state,
                    fault=self.iv_code,
                )
            )
        self.iv_start, self.iv_state, self.iv_code = a, state, code

    def add(self, s: Sample) -> list[StopEvent]:
        """Advance with one sample; return the stop-event updates it caused."""
        t = s.t_ms
        if self.last_t is not None and t <= self.last_t:
            return []
        out: list[StopEvent] = []
        before = (self._cls(), self.ev_code or self.ev_seen) if self.ev_start is not None else None
        if self.last_t is not None:
            held_end = min(t, self.last_t + self._gap)
            self._interval(self.last_t, held_end, self.state, self.code)
            self._interval(held_end, t, MachineState.UNKNOWN, 0)
            if self.state is MachineState.STOPPED:
                spans = self._planner.spans(self.last_t, held_end)
                if spans:
                    self.ev_d += sum(e - b for b, e in spans)
                    if self.code and not self.ev_code:
                        self.ev_code = self.code
        if s.is_bad:
            self.state, self.code = MachineState.UNKNOWN, 0
        elif s.run:
            self.state, self.code = MachineState.RUNNING, 0
            if self.ev_start is not None:
                out.append(self._event(t))
                self.ev_start, self.ev_d, self.ev_code, self.ev_seen = None, 0, 0, 0
                before = None
        else:
            self.state, self.code = MachineState.STOPPED, s.fault
            if self.ev_start is None:
                self.ev_start, self.ev_d, self.ev_seen = t, 0, s.fault
                self.ev_code = s.fault if self._planner.planned_before(t + 1)[0] else 0
                out.append(self._event(None))
                before = None
            elif s.fault and not self.ev_code and self._planner.planned_before(t + 1)[0]:
                # The code applies from this instant, which is planned: known now.
                self.ev_code = s.fault
            if s.fault and not self.ev_seen:
                self.ev_seen = s.fault
        if (
            before is not None
            and self.ev_start is not None
            and before != (self._cls(), self.ev_code or self.ev_seen)
        ):
            out.append(self._event(None))
        self._interval(t, t + 1, self.state, self.code)
        self.last_t = t
        return out

    @property
    def live(self) -> LiveState:
        """The state as of the newest sample (the same rule the intervals follow)."""
        since = None if self.iv_start is None else self.iv_start / 1000
        return LiveState(self.state, self.code, since)

    def drain(self) -> list[StateInterval]:
        """Closed intervals since the last call."""
        out, self.closed = self.closed, []
        return out

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot."""
        return {
            "last_t": self.last_t,
            "state": self.state.value,
            "code": self.code,
            "ev": [self.ev_start, self.ev_d, self.ev_code, self.ev_seen],
            "iv": [self.iv_start, self.iv_state.value, self.iv_code],
            "closed": [i.as_dict() for i in self.closed],
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load a snapshot made by :meth:`to_state`."""
        self.last_t = data["last_t"]
        self.state = MachineState(data["state"])
        self.code = data["code"]
        self.ev_start, self.ev_d, self.ev_code, *seen = data["ev"]
        self.ev_seen = seen[0] if seen else self.ev_code
        iv_start, iv_state, self.iv_code = data["iv"]
        self.iv_start, self.iv_state = iv_start, MachineState(iv_state)
        self.closed = [
            StateInterval(
                start=c["start"], end=c["end"], state=MachineState(c["state"]), fault=c["fault"]
            )
            for c in data["closed"]
        ]
