"""The machine model: an event-driven, seeded state machine in sim seconds.

A :class:`Machine` is advanced with :meth:`Machine.advance_to`; every event
(part completion, fault, micro-stop, changeover, scripted action, end of a
timed state) is processed at its *exact* sim time in a fixed order, so the
result does not depend on how often or in what steps the model is advanced:
the same scenario and seed always give the same history. Random draws come
from one ``random.Random`` per machine seeded with ``"<seed>:<machine id>"``.

States: running, idle (starved, blocked or a micro-stop), down (with a fault
code), planned stop (changeover, maintenance) and powered off. Counters are
unbounded integers here; 16/32-bit wrapping happens when they are encoded
(see :mod:`simulators.registers`), exactly like a PLC whose counter word
overflows. Every completed state interval, PLC restart and comms outage is
reported to the ``record`` callback (the ground truth, see
:mod:`simulators.truth`). This module does no I/O and never sleeps.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulators.scenario import Action, MachineSpec, OutageMode, ScriptedEvent

Record = dict[str, Any]
RecordSink = Callable[[Record], None]

_TEMP_TAU_S = 600.0
_EPS = 1e-9


class MachineState(enum.IntEnum):
    """Value of the machine-state register."""

    OFF = 0
    RUNNING = 1
    IDLE = 2
    DOWN = 3
    PLANNED_STOP = 4


STATE_NAMES = {
    MachineState.OFF: "off",
    MachineState.RUNNING: "running",
    MachineState.IDLE: "idle",
    MachineState.DOWN: "down",
    MachineState.PLANNED_STOP: "planned_stop",
}

# Status word bits.
BIT_RUN = 0
BIT_FAULT = 1
BIT_IDLE = 2
BIT_PLANNED = 3
BIT_POWERED = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """What the PLC shows at one instant; front ends encode this."""

    t: float
    state: MachineState
    reason: str
    fault_code: int
    alarm_word: int
    status_word: int
    good: int
    scrap: int
    total: int
    speed: float
    temperature: float
    status_text: str
    restart_count: int
    cycle_time_s: float

    @property
    def running(self) -> bool:
        """The run bit."""
        return self.state is MachineState.RUNNING


def _r(x: float) -> float:
    return round(x, 6)


class Machine:
    """One simulated machine.

    Args:
        spec: The machine from the scenario.
        seed: Scenario seed; the machine's generator is seeded with ``f"{seed}:{spec.id}"``.
        wall_ts: Maps sim seconds to wall epoch for the truth records.
        record: Receives ground-truth records (dicts), in sim-time order.
    """

    def __init__(
        self,
        spec: MachineSpec,
        *,
        seed: int,
        wall_ts: Callable[[float], float],
        record: RecordSink | None = None,
    ) -> None:
        self.spec = spec
        self._rng = random.Random(f"{seed}:{spec.id}")
        self._wall_ts = wall_ts
        self._record = record or (lambda _r: None)
        q = spec.quirks
        self.t = 0.0
        self.good = q.counter_start
        self.scrap = 0
        self.total = q.counter_start
        self.restart_count = 0
        self.cycle_time_s = spec.ideal_cycle_s
        self._events = list(spec.events)
        self._next_event = 0
        # Current interval.
        self.state = MachineState.RUNNING
        self.reason = "production"
        self.fault_code = 0
        self._until: float | None = None
        self._start = 0.0
        self._parts_good = 0
        self._parts_scrap = 0
        # Running-only timers (absolute sim times).
        self._next_part = math.inf
        self._next_fail = math.inf
        self._next_micro = math.inf
        self._next_idle = math.inf
        st = spec.stochastic
        self._changeover_period = (
            st.shift_s / st.changeovers_per_shift if st.changeovers_per_shift else math.inf
        )
        self._next_changeover = self._changeover_period
        # Comms.
        self.outage_mode: OutageMode | None = None
        self._outage_until: float | None = None
        self._outage_start = 0.0
        # Temperature: first-order lag towards the state's target.
        self._temp0 = spec.ambient_temp_c + 0.8 * (spec.running_temp_c - spec.ambient_temp_c)
        self._temp_t0 = 0.0
        self.version = 0
        self._enter_running(0.0, emit=False)

    # ----- public API -------------------------------------------------------------

    @property
    def comms_ok(self) -> bool:
        """False while the PLC does not answer (outage or restart)."""
        return self.outage_mode is None

    def advance_to(self, t: float) -> None:
        """Process every event up to and including sim time ``t``."""
        if t < self.t:
            return
        while True:
            nxt = self._next_time()
            if nxt > t + _EPS:
                break
            self._fire(nxt)
        self.t = t

    def snapshot(self) -> Snapshot:
        """The PLC's registers at the current sim time, decoded."""
        s = self.state
        running = s is MachineState.RUNNING
        word = 0
        if running:
            word |= 1 << BIT_RUN
        if self.fault_code:
            word |= 1 << BIT_FAULT
        if s is MachineState.IDLE:
            word |= 1 << BIT_IDLE
        if s is MachineState.PLANNED_STOP:
            word |= 1 << BIT_PLANNED
        if s is not MachineState.OFF:
            word |= 1 << BIT_POWERED
        alarm = (1 << self.spec.alarm_bit(self.fault_code)) if self.fault_code else 0
        return Snapshot(
            t=self.t,
            state=s,
            reason=self.reason,
            fault_code=self.fault_code,
            alarm_word=alarm,
            status_word=word,
            good=self.good,
            scrap=self.scrap,
            total=self.total,
            speed=round(60.0 / self.cycle_time_s, 3) if running else 0.0,
            temperature=round(self._temperature(self.t), 2),
            status_text=self._status_text(),
            restart_count=self.restart_count,
            cycle_time_s=round(self.cycle_time_s, 4),
        )

    def force_fault(self, code: int, duration_s: float) -> None:
        """Go down with ``code`` now, for ``duration_s`` sim seconds (test injection)."""
        if code <= 0 or duration_s <= 0:
            raise ValueError("a forced fault needs a positive code and duration")
        self._apply(
            ScriptedEvent(at_s=self.t, action=Action.FAULT, code=code, duration_s=duration_s)
        )

    def force_state(self, action: Action, duration_s: float, reason: str = "") -> None:
        """Apply a scripted action now (idle, planned_stop, power_off, plc_restart)."""
        default = {Action.IDLE: "starved", Action.PLANNED_STOP: "changeover"}.get(action, "")
        self._apply(
            ScriptedEvent(
                at_s=self.t, action=action, duration_s=duration_s, reason=reason or default
            )
        )

    def set_outage(self, on: bool, mode: OutageMode = OutageMode.SILENT) -> None:
        """Start (indefinitely) or end a comms outage now."""
        if on:
            self._start_outage(self.t, None, mode)
        elif self.outage_mode is not None:
            self._end_outage(self.t)

    def close(self) -> None:
        """Emit the still-open interval and outage (marked ``"open": true``)."""
        if self.outage_mode is not None:
            self._emit_outage(self.t, open_=True)
        self._emit_interval(self.t, open_=True)

    # ----- event loop ---------------------------------------------------------------

    def _next_time(self) -> float:
        cands = [math.inf]
        if self._next_event < len(self._events):
            cands.append(self._events[self._next_event].at_s)
        if self._until is not None:
            cands.append(self._until)
        if self._outage_until is not None:
            cands.append(self._outage_until)
        if self.state is MachineState.RUNNING:
            cands += [
                self._next_part,
                self._next_fail,
                self._next_micro,
                self._next_idle,
                self._next_changeover,
            ]
        return min(cands)

    def _fire(self, t: float) -> None:
        """Handle the earliest event at ``t``; ties resolve in a fixed order."""
        # A deferred timer (a changeover due while the machine was stopped) fires "now".
        t = max(self.t, t)
        self.t = t
        self.version += 1
        if self._outage_until is not None and self._outage_until <= t + _EPS:
            self._end_outage(self._outage_until)
            return
        if self._next_event < len(self._events) and self._events[self._next_event].at_s <= t:
            ev = self._events[self._next_event]
            self._next_event += 1
            self._apply(ev)
            return
        if self._until is not None and self._until <= t + _EPS:
            self._enter_running(self._until)
            return
        if self.state is not MachineState.RUNNING:
            return
        if self._next_part <= t:
            self._complete_part(self._next_part)
        elif self._next_fail <= t:
            st = self.spec.stochastic
            code = st.fault_codes[self._rng.randrange(len(st.fault_codes))]
            dur = self._rng.expovariate(1.0 / st.mttr_s)
            self._transition(t, MachineState.DOWN, "breakdown", code, t + dur)
        elif self._next_micro <= t:
            dur = self._rng.expovariate(1.0 / self.spec.stochastic.microstop_mean_s)
            self._transition(t, MachineState.IDLE, "microstop", 0, t + dur)
        elif self._next_idle <= t:
            dur = self._rng.expovariate(1.0 / self.spec.stochastic.idle_mean_s)
            reason = "starved" if self._rng.random() < 0.5 else "blocked"
            self._transition(t, MachineState.IDLE, reason, 0, t + dur)
        elif self._next_changeover <= t:
            self._next_changeover += self._changeover_period
            while self._next_changeover <= t:
                self._next_changeover += self._changeover_period
            st = self.spec.stochastic
            self._transition(t, MachineState.PLANNED_STOP, "changeover", 0, t + st.changeover_s)

    def _apply(self, ev: ScriptedEvent) -> None:
        t = max(ev.at_s, self.t)
        end = t + ev.duration_s
        a = ev.action
        if a is Action.FAULT:
            self._transition(t, MachineState.DOWN, "fault", ev.code, end)
        elif a is Action.IDLE:
            self._transition(t, MachineState.IDLE, ev.reason, 0, end)
        elif a is Action.PLANNED_STOP:
            self._transition(t, MachineState.PLANNED_STOP, ev.reason, 0, end)
        elif a is Action.POWER_OFF:
            self._transition(t, MachineState.OFF, "power_off", 0, end)
        elif a is Action.COMMS_OUTAGE:
            self._start_outage(t, end, ev.mode)
        elif a is Action.PLC_RESTART:
            self._restart(t, ev.duration_s)

    def _restart(self, t: float, duration_s: float) -> None:
        self._record(
            {
                "type": "restart",
                "machine": self.spec.id,
                "t_s": _r(t),
                "ts": round(self._wall_ts(t), 3),
                "good_before": self.good,
                "scrap_before": self.scrap,
                "total_before": self.total,
                "reset": self.spec.quirks.reset_on_restart,
            }
        )
        self.restart_count += 1
        if self.spec.quirks.reset_on_restart:
            self.good = self.scrap = self.total = 0
        if duration_s > 0:
            self._start_outage(t, t + duration_s, OutageMode.SILENT)

    def _start_outage(self, t: float, until: float | None, mode: OutageMode) -> None:
        if self.outage_mode is not None:
            self._emit_outage(t, open_=False)
        self.outage_mode = mode
        self._outage_start = t
        self._outage_until = until
        self.version += 1

    def _end_outage(self, t: float) -> None:
        self._emit_outage(t, open_=False)
        self.outage_mode = None
        self._outage_until = None
        self.version += 1

    def _emit_outage(self, t: float, *, open_: bool) -> None:
        rec: Record = {
            "type": "outage",
            "machine": self.spec.id,
            "mode": self.outage_mode.value if self.outage_mode else "silent",
            "start_s": _r(self._outage_start),
            "end_s": _r(t),
            "start_ts": round(self._wall_ts(self._outage_start), 3),
            "end_ts": round(self._wall_ts(t), 3),
        }
        if open_:
            rec["open"] = True
        self._record(rec)

    def _complete_part(self, t: float) -> None:
        if self._rng.random() < self.spec.scrap_rate:
            self.scrap += 1
            self._parts_scrap += 1
        else:
            self.good += 1
            self._parts_good += 1
        self.total += 1
        self._schedule_part(t)

    def _schedule_part(self, t: float) -> None:
        jitter = self.spec.cycle_jitter
        factor = 1.0 + self._rng.uniform(-jitter, jitter) if jitter else 1.0
        self.cycle_time_s = self.spec.ideal_cycle_s * factor
        self._next_part = t + self.cycle_time_s

    def _enter_running(self, t: float, *, emit: bool = True) -> None:
        if emit:
            self._transition(t, MachineState.RUNNING, "production", 0, None)
            return
        self._arm_running(t)

    def _arm_running(self, t: float) -> None:
        st = self.spec.stochastic
        rng = self._rng

        def draw(rate_per_s: float) -> float:
            return t + rng.expovariate(rate_per_s) if rate_per_s > 0 else math.inf

        self._schedule_part(t)
        self._next_fail = draw(1.0 / st.mtbf_s if st.mtbf_s > 0 else 0.0)
        self._next_micro = draw(st.microstops_per_h / 3600.0)
        self._next_idle = draw(st.idle_per_h / 3600.0)

    def _transition(
        self, t: float, state: MachineState, reason: str, code: int, until: float | None
    ) -> None:
        self._temp0 = self._temperature(t)
        self._temp_t0 = t
        self._emit_interval(t, open_=False)
        self.state = state
        self.reason = reason
        self.fault_code = code
        self._until = until
        self._start = t
        self._parts_good = self._parts_scrap = 0
        self.version += 1
        if state is MachineState.RUNNING:
            self._arm_running(t)
        else:
            self._next_part = math.inf

    def _emit_interval(self, t: float, *, open_: bool) -> None:
        if t <= self._start and not open_:
            return  # zero-length interval (two events at the same instant)
        rec: Record = {
            "type": "interval",
            "machine": self.spec.id,
            "state": STATE_NAMES[self.state],
            "reason": self.reason,
            "fault_code": self.fault_code,
            "run": self.state is MachineState.RUNNING,
            "start_s": _r(self._start),
            "end_s": _r(t),
            "start_ts": round(self._wall_ts(self._start), 3),
            "end_ts": round(self._wall_ts(t), 3),
            "good": self.good,
            "scrap": self.scrap,
            "total": self.total,
            "parts_good": self._parts_good,
            "parts_scrap": self._parts_scrap,
        }
        if open_:
            rec["open"] = True
        self._record(rec)

    # ----- derived values -----------------------------------------------------------

    def _temperature(self, t: float) -> float:
        spec = self.spec
        if self.state is MachineState.RUNNING:
            target = spec.running_temp_c
        elif self.state is MachineState.OFF:
            target = spec.ambient_temp_c
        else:
            target = spec.ambient_temp_c + 0.6 * (spec.running_temp_c - spec.ambient_temp_c)
        return target + (self._temp0 - target) * math.exp(-(t - self._temp_t0) / _TEMP_TAU_S)

    def _status_text(self) -> str:
        s = self.state
        if s is MachineState.RUNNING:
            return "RUNNING"
        if s is MachineState.DOWN:
            return f"FAULT {self.fault_code}"
        if s is MachineState.OFF:
            return "POWER OFF"
        return self.reason.upper()
