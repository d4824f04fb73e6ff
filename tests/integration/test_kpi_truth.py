"""End-to-end KPI truth: the agent's final shift record agrees with the simulator's ground truth.

The scripted ``kpi_truth`` scenario (three micro-stops, one with a fault code;
breakdowns with codes 17 and 42; one idle stop without a code; 5 % seeded scrap;
16-bit counters that wrap) is played 20x faster than real time by the bundled
simulator, in-process, on Modbus TCP. The agent runs as a real child process
(``python -m edge_agent run``), polls every 100 ms through the real Modbus
driver and publishes to a real Mosquitto. A ``shift`` report window is defined
in local ``HH:MM`` (UTC) so that it starts before the run and ends 60-120 s
later; the test waits for the agent's *final* record of that shift and compares
it with the truth file:

* each published stop event with its truth interval, one by one: duration within
  one poll interval (spec §4, "Polling sampling error"), start and end never
  before the truth edge and at most one (possibly late) poll after it, class and
  first fault code exact;
* event counts (stops, micro_stops, failures) exact;
* downtime_breakdown_s / downtime_other_s / micro_stop_time_s and each
  downtime_by_code entry within (number of events x poll interval);
* total_count / good_count exact, across the 16-bit wrap (spec §3.7).

Counts can be exact because of the test clock (:class:`GatedClock`): sim time
stays at 0 until the agent has taken its first samples, and is held after the
script ends (before the shift ends). The counters are therefore constant at
both ends of the window, so the window's counts (deltas at ``start < t <= end``)
equal the truth counters' difference whatever the poll phase. Between those two
instants the simulator runs exactly like ``ScaledClock``.

Every wait is bounded; the agent is stopped by PID; ports are free loopback ports.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from simulators.host import SimulatorHost
from simulators.truth import read_truth
from tests.integration.sim_config import sim_machine_config
from tests.plugins.broker import Mosquitto, MqttCollector, Received

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SPEED = 20.0
"""Sim seconds per wall second."""
POLL_S = 0.1
"""Agent poll interval (wall seconds): the sampling error bound of every stop edge."""
SLACK_S = 0.05
"""Scheduling slack on top of one poll for durations (request round trip, loop latency)."""
EDGE_LATE_S = POLL_S + 0.1
"""Latest an edge may be seen after the truth: the next poll, which may start late under load."""
THRESHOLD_SIM_S = 120.0
IDEAL_CYCLE_SIM_S = 1.0
COUNTER_START = 65436
"""``counter_start`` of the scenario (both good and total start there)."""
HOLD_SIM_S = 930.0
"""Sim time at which the test clock stops: the script ends at 893.5 s."""
MIN_LEAD_S = 60.0
"""The shift ends at the first whole minute at least this long after the test starts."""
END_MARGIN_S = 3.0
"""The sim must be held this long before the shift ends (the last in-shift polls see it)."""
FINAL_WAIT_S = 20.0
"""How long after the shift end the final record may take (lateness + report interval)."""
SHIFT_NAME = "truth"

KPI = """
## Simulated seconds divided by the speed: the agent lives in wall time.
ideal_cycle_time_s = {ict}
micro_stop_threshold_s = {threshold}
max_gap_s = 1.0
timezone = "UTC"

[[machines.m1.kpi.shifts]]
name = "{shift}"
start = "{shift_start}"
end = "{shift_end}"
"""


class GatedClock:
    """A scaled sim clock that holds sim time 0 until :meth:`release` and holds at ``hold_s``.

    Between the two it is a :class:`~simulators.clock.ScaledClock` started at release:
    ``now() = (monotonic - mono0) * speed`` and ``wall_ts(t) = epoch0 + t / speed``.
    """

    def __init__(self, speed: float, hold_s: float) -> None:
        self._speed = speed
        self._hold_s = hold_s
        self._mono0: float | None = None
        self._epoch0 = time.time()

    @property
    def speed(self) -> float:
        """Sim seconds per wall second."""
        return self._speed

    @property
    def released_at(self) -> float:
        """Wall epoch of sim time 0 (the release)."""
        return self._epoch0

    def release(self) -> None:
        """Let sim time run from now on."""
        self._mono0 = time.monotonic()
        self._epoch0 = time.time()

    def now(self) -> float:
        """Sim seconds: 0 before the release, capped at the hold time."""
        if self._mono0 is None:
            return 0.0
        return min((time.monotonic() - self._mono0) * self._speed, self._hold_s)

    def wall_ts(self, sim_t: float) -> float:
        """Wall epoch of sim time ``sim_t``."""
        return self._epoch0 + sim_t / self._speed


@dataclass(frozen=True, slots=True, kw_only=True)
class ShiftPlan:
    """The shift under test: whole UTC minutes around the run."""

    start: dt.datetime
    end: dt.datetime

    @property
    def window_name(self) -> str:
        """The name the agent gives this shift's report window."""
        return f"shift:{self.start.date().isoformat()}:{SHIFT_NAME}"


def plan_shift(now: float) -> ShiftPlan:
    """Shift starting at the current whole minute, ending >= MIN_LEAD_S later on a minute."""
    start = math.floor(now / 60.0) * 60
    end = math.ceil((now + MIN_LEAD_S) / 60.0) * 60
    utc = dt.timezone.utc
    return ShiftPlan(
        start=dt.datetime.fromtimestamp(start, utc), end=dt.datetime.fromtimestamp(end, utc)
    )


def expected_class(truth: dict[str, Any]) -> str:
    """Spec §3.6 class of a truth stop interval under the simulated threshold."""
    if truth["end_s"] - truth["start_s"] <= THRESHOLD_SIM_S:
        return "micro"
    return "breakdown" if truth["fault_code"] else "other"


def unique_docs(messages: list[Received]) -> list[dict[str, Any]]:
    """Envelopes de-duplicated on ``seq`` (QoS 1 is at-least-once), in seq order."""
    by_seq: dict[int, dict[str, Any]] = {}
    for m in messages:
        if not m.payload.startswith(b"{"):
            continue
        doc = m.json()
        if "seq" in doc:
            by_seq.setdefault(int(doc["seq"]), doc)
    return [by_seq[k] for k in sorted(by_seq)]


def ended_stops(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The final update of every stop event of machine m1, in start order."""
    stops = [
        d["data"]
        for d in docs
        if d.get("kind") == "stop" and d["data"].get("machine") == "m1" and d["data"]["end"]
    ]
    return sorted(stops, key=lambda s: s["start"])


def final_record(docs: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The latest final record (highest revision) of window ``name``, if any arrived."""
    finals = [
        d["data"]
        for d in docs
        if d.get("kind") == "kpi" and d["data"].get("name") == name and d["data"].get("final")
    ]
    return max(finals, key=lambda r: r["revision"]) if finals else None


def agent_status(state: Path) -> dict[str, Any]:
    """The agent's status.json, or {} while it is not (yet) readable."""
    try:
        doc = json.loads((state / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def machine_state(state: Path) -> str | None:
    """Machine m1's state as the agent's status.json reports it (None while unknown)."""
    machine = agent_status(state).get("machines", {}).get("m1", {})
    return machine.get("state") if isinstance(machine, dict) else None


def stop_agent(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM by PID, bounded wait, SIGKILL if it does not exit; returns the exit code."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    return int(proc.returncode)


@dataclass(slots=True)
class RunResult:
    """What one end-to-end run produced."""

    plan: ShiftPlan
    spawned_at: float
    released_at: float
    docs: list[dict[str, Any]]
    truth: list[dict[str, Any]]
    exit_code: int
    log: str


async def run_scenario(tmp_path: Path, mosquitto: Mosquitto) -> RunResult:
    """Play the scenario through the agent until its final shift record is published."""
    hold_wall_s = HOLD_SIM_S / SPEED
    plan = plan_shift(time.time())
    state = tmp_path / "state"
    truth_path = tmp_path / "truth.jsonl"
    log_path = tmp_path / "agent.log"
    clock = GatedClock(SPEED, HOLD_SIM_S)
    async with SimulatorHost(
        "kpi_truth",
        clock=clock,
        seed=7,
        modbus_tcp=("127.0.0.1", 0),
        truth_path=truth_path,
        tick_s=0.05,
    ) as sim:
        config = tmp_path / "agent.toml"
        config.write_text(
            sim_machine_config(
                agent_id="kpi-truth-gw",
                machine="m1",
                state=state,
                mqtt_port=mosquitto.port,
                modbus_port=sim.modbus_port,
                poll_ms=round(POLL_S * 1000),
                windows='["shift"]',
                allowed_lateness_s=1.0,
                counter_bits=16,
                status_interval_s=0.5,
                kpi=KPI.format(
                    ict=IDEAL_CYCLE_SIM_S / SPEED,
                    threshold=THRESHOLD_SIM_S / SPEED,
                    shift=SHIFT_NAME,
                    shift_start=plan.start.strftime("%H:%M"),
                    shift_end=plan.end.strftime("%H:%M"),
                ),
            )
        )
        with (
            MqttCollector("127.0.0.1", mosquitto.port, "#") as collector,
            log_path.open("wb") as log,
        ):
            proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", "-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            exit_code = -1
            spawned_at = time.time()
            try:
                # 1. Sim time is frozen; wait (bounded) until the agent sees the machine run.
                release_by = plan.end.timestamp() - hold_wall_s - END_MARGIN_S
                for _ in range(round((release_by - time.time()) / 0.1) + 1):
                    if machine_state(state) == "running" or proc.poll() is not None:
                        break
                    if time.time() > release_by:
                        break
                    await asyncio.sleep(0.1)
                if machine_state(state) != "running":
                    pytest.fail(
                        f"agent did not report machine m1 running within "
                        f"{release_by - spawned_at:.1f} s (exit {proc.poll()}):\n"
                        f"{log_path.read_text(errors='replace')[-3000:]}"
                    )
                # Two more polls, so the baseline sample certainly holds the start counters.
                await asyncio.sleep(2 * POLL_S)
                clock.release()
                # 2. The run plays out; wait for the final record of the shift (bounded).
                deadline = plan.end.timestamp() + FINAL_WAIT_S
                for _ in range(round(deadline - time.time()) + 1):
                    if time.time() > deadline or proc.poll() is not None:
                        break
                    got = await asyncio.to_thread(
                        collector.wait_for,
                        lambda ms: final_record(unique_docs(ms), plan.window_name) is not None,
                        1.0,
                    )
                    if got:
                        break
                # Stop events are enqueued before the record, so they have arrived too; a
                # short grace period lets a QoS 1 redelivery in flight land as well.
                await asyncio.sleep(0.5)
            finally:
                exit_code = stop_agent(proc)
            docs = unique_docs(collector.snapshot())
    return RunResult(
        plan=plan,
        spawned_at=spawned_at,
        released_at=clock.released_at,
        docs=docs,
        truth=read_truth(truth_path),
        exit_code=exit_code,
        log=log_path.read_text(errors="replace")[-4000:],
    )


def truth_stops(truth: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Closed non-running truth intervals of M1, in time order."""
    return [
        r
        for r in truth
        if r.get("type") == "interval"
        and r["machine"] == "M1"
        and not r["run"]
        and not r.get("open")
    ]


def summary(
    run: RunResult, rec: dict[str, Any], events: list[dict[str, Any]], stops: list[dict[str, Any]]
) -> str:
    """A human-readable comparison, printed so that a failure shows the measured errors."""
    lines = [
        f"window {run.plan.window_name} [{run.plan.start:%H:%M:%S}, {run.plan.end:%H:%M:%S}) UTC;"
        f" agent ready after {run.released_at - run.spawned_at:.2f} s",
        "truth interval            truth_s  agent_s  d_start  d_end   class      fault",
    ]
    for ev, tr in zip(events, stops, strict=False):
        lines.append(
            f"{tr['reason']:>8}/{tr['fault_code']:<3} sim {tr['start_s']:>6.0f}  "
            f"{tr['end_ts'] - tr['start_ts']:7.3f}  {ev['duration_s']:7.3f}  "
            f"{ev['start'] - tr['start_ts']:+.3f}  {ev['end'] - tr['end_ts']:+.3f}  "
            f"{ev['class']:<9}  {ev['fault']}"
        )
    keys = (
        "unknown_time_s",
        "running_time_s",
        "micro_stop_time_s",
        "downtime_breakdown_s",
        "downtime_other_s",
        "downtime_by_code",
        "stops",
        "micro_stops",
        "failures",
        "total_count",
        "good_count",
        "flags",
    )
    lines.append("record: " + json.dumps({k: rec.get(k) for k in keys}))
    return "\n".join(lines)


def truth_sum(items: list[dict[str, Any]]) -> float:
    """Total wall duration of truth intervals."""
    return float(sum(t["end_ts"] - t["start_ts"] for t in items))


def assert_close(got: float, want: float, tol: float, what: str) -> None:
    """``|got - want| <= tol`` with a message naming the quantity."""
    assert abs(got - want) <= tol, (
        f"{what}: agent {got:.3f} s, truth {want:.3f} s, tolerance {tol:.3f} s"
    )


async def test_final_shift_record_matches_simulator_truth(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The final shift record and every stop event agree with the simulator's ground truth."""
    run = await run_scenario(tmp_path, mosquitto)
    assert run.exit_code == 0, run.log
    plan = run.plan
    rec = final_record(run.docs, plan.window_name)
    assert rec is not None, f"no final record of {plan.window_name}:\n{run.log}"

    # The truth timeline is the scripted one and lies inside the shift.
    stops = truth_stops(run.truth)
    assert [(s["state"], s["fault_code"]) for s in stops] == [
        ("idle", 0),
        ("down", 17),
        ("down", 5),
        ("idle", 0),
        ("down", 42),
        ("idle", 0),
    ]
    assert plan.start.timestamp() < run.released_at < stops[0]["start_ts"]
    assert stops[-1]["end_ts"] < run.released_at + HOLD_SIM_S / SPEED < plan.end.timestamp()

    # Stop events, one by one: each edge is seen at the next poll (spec §4, V15).
    events = ended_stops(run.docs)
    print(summary(run, rec, events, stops))
    assert len(events) == len(stops), json.dumps(events, indent=1)
    edge_tol = POLL_S + SLACK_S
    for ev, tr in zip(events, stops, strict=True):
        label = f"stop {tr['reason']}/{tr['fault_code']} at sim {tr['start_s']} s"
        truth_s = tr["end_ts"] - tr["start_ts"]
        # An edge is never seen before it happens (a few ms for the request round trip).
        assert -SLACK_S <= ev["start"] - tr["start_ts"] <= EDGE_LATE_S, label
        assert -SLACK_S <= ev["end"] - tr["end_ts"] <= EDGE_LATE_S, label
        assert_close(ev["duration_s"], truth_s, edge_tol, f"{label} duration")
        assert ev["class"] == expected_class(tr), label
        assert ev["fault"] == tr["fault_code"], label

    # Window identity and time model.
    assert rec["final"] is True
    assert rec["revision"] == 0
    shift_s = (plan.end - plan.start).total_seconds()
    assert rec["calendar_time_s"] == pytest.approx(shift_s, abs=1e-3)
    assert rec["planned_time_s"] == pytest.approx(shift_s, abs=1e-3)
    parts = (
        rec["running_time_s"]
        + rec["micro_stop_time_s"]
        + rec["downtime_breakdown_s"]
        + rec["downtime_other_s"]
        + rec["unknown_time_s"]
    )
    assert parts == pytest.approx(rec["planned_time_s"], abs=0.01)
    # Unknown time is the start of the shift before the agent's first sample, nothing more.
    assert 0 < rec["unknown_time_s"] < run.released_at - plan.start.timestamp()

    # Event counts: exact.
    by_class: dict[str, list[dict[str, Any]]] = {"micro": [], "breakdown": [], "other": []}
    for tr in stops:
        by_class[expected_class(tr)].append(tr)
    assert len(by_class["micro"]) == 3
    assert rec["micro_stops"] == len(by_class["micro"])
    assert rec["stops"] == len(by_class["breakdown"]) + len(by_class["other"])
    assert rec["failures"] == len(by_class["breakdown"])

    # Downtime components: within (number of events x one poll).
    for field_name, cls in (
        ("micro_stop_time_s", "micro"),
        ("downtime_breakdown_s", "breakdown"),
        ("downtime_other_s", "other"),
    ):
        items = by_class[cls]
        assert_close(rec[field_name], truth_sum(items), len(items) * edge_tol, field_name)
    by_code = rec["downtime_by_code"]
    assert set(by_code) == {"0", "17", "42"}
    for code, items in (
        ("0", by_class["other"]),
        ("17", [t for t in by_class["breakdown"] if t["fault_code"] == 17]),
        ("42", [t for t in by_class["breakdown"] if t["fault_code"] == 42]),
    ):
        assert_close(by_code[code], truth_sum(items), len(items) * edge_tol, f"by_code[{code}]")
    # The record and the published events are the same measurement.
    published = sum(e["duration_s"] for e in events if e["class"] == "breakdown")
    assert rec["downtime_breakdown_s"] == pytest.approx(published, abs=0.005)
    assert rec["ttr_sum_s"] == pytest.approx(rec["downtime_breakdown_s"], abs=0.005)
    breakdowns = by_class["breakdown"]
    assert_close(rec["mttr_s"], truth_sum(breakdowns) / len(breakdowns), edge_tol, "mttr_s")

    # Counts: exact, across the 16-bit wrap (truth counters are unwrapped).
    last = [r for r in run.truth if r.get("type") == "interval" and r["machine"] == "M1"][-1]
    assert last["total"] > 65536 > COUNTER_START
    assert last["good"] > 65536
    assert rec["total_count"] == last["total"] - COUNTER_START
    assert rec["good_count"] == last["good"] - COUNTER_START
    assert rec["unattributed_total_count"] == 0
    assert rec["out_of_plan_total_count"] == 0
    assert "counter_wrap" in rec["flags"]
    assert "counter_reset" not in rec["flags"]
    assert "counter_anomaly" not in rec["flags"]
    assert rec["quality"] == pytest.approx(rec["good_count"] / rec["total_count"], abs=1e-6)

    # Only the configured window kind was reported.
    kpi_names = {d["data"]["name"] for d in run.docs if d.get("kind") == "kpi"}
    assert kpi_names == {plan.window_name}
