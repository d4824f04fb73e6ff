"""Shared harness of the end-to-end KPI truth tests.

The agent runs as a child process against an in-process simulator with a gated
clock, and what it publishes is compared with the simulator's truth. Used by
``test_kpi_truth.py`` (Modbus TCP, OPC-UA poll and OPC-UA subscribe in one agent) and
``test_opcua_keepalive.py`` (flat signals, a silent server).

* :class:`GatedClock`: sim time stays at 0 until :meth:`GatedClock.release` and is held at
  ``hold_s``, so the counters are constant at both ends of a report window and counts can
  be compared exactly.
* :func:`spawn_agent` / :func:`stop_agent`: ``python -m edge_agent run`` by PID, bounded.
* :func:`wait_until_running` / :func:`wait_for_final`: bounded waits on ``status.json``
  and on the broker.
* ``assert_*``: the checks of the Modbus truth test (stop events one by one, counts
  exact, downtime within one sample period per event, time identity), for any machine.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge_agent.kpi.timeutil import parse_instant
from tests.plugins.broker import MqttCollector, Received


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
    name: str

    @property
    def window_name(self) -> str:
        """The name the agent gives this shift's report window."""
        return f"shift:{self.start.date().isoformat()}:{self.name}"


def plan_shift(now: float, *, min_lead_s: float, name: str) -> ShiftPlan:
    """Shift starting at the current whole minute, ending >= ``min_lead_s`` later on a minute."""
    start = math.floor(now / 60.0) * 60
    end = math.ceil((now + min_lead_s) / 60.0) * 60
    utc = dt.timezone.utc
    return ShiftPlan(
        start=dt.datetime.fromtimestamp(start, utc),
        end=dt.datetime.fromtimestamp(end, utc),
        name=name,
    )


def contract_window(start: float, end: float) -> tuple[dt.datetime, dt.datetime, str]:
    """A contract report window on whole seconds: ``(start, end, window name)``."""
    utc = dt.timezone.utc
    a = dt.datetime.fromtimestamp(math.floor(start), utc)
    b = dt.datetime.fromtimestamp(math.ceil(end), utc)
    return a, b, f"contract:{a.isoformat()}/{b.isoformat()}"


def expected_class(truth: dict[str, Any], threshold_sim_s: float) -> str:
    """Spec §3.6 class of a truth stop interval under the simulated threshold."""
    if truth["end_s"] - truth["start_s"] <= threshold_sim_s:
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


def ended_stops(docs: list[dict[str, Any]], machine: str) -> list[dict[str, Any]]:
    """The final update of every stop event of ``machine``, in start order."""
    stops = [
        d["data"]
        for d in docs
        if d.get("kind") == "stop" and d["data"].get("machine") == machine and d["data"]["end"]
    ]
    return sorted(stops, key=lambda s: s["start"])


def final_record(docs: list[dict[str, Any]], name: str, machine: str) -> dict[str, Any] | None:
    """The latest final record (highest revision) of window ``name`` of ``machine``, if any."""
    finals = [
        d["data"]
        for d in docs
        if d.get("kind") == "kpi"
        and d["data"].get("window") == name
        and d["data"].get("machine") == machine
        and d["data"].get("final")
    ]
    return max(finals, key=lambda r: r["revision"]) if finals else None


def agent_status(state: Path) -> dict[str, Any]:
    """The agent's status.json, or {} while it is not (yet) readable."""
    try:
        doc = json.loads((state / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def machine_state(state: Path, machine: str) -> str | None:
    """A machine's state as the agent's status.json reports it (None while unknown)."""
    entry = agent_status(state).get("machines", {}).get(machine, {})
    return entry.get("state") if isinstance(entry, dict) else None


def spawn_agent(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m edge_agent run -c config``, output to ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


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


async def wait_until_running(
    proc: subprocess.Popen[bytes],
    state: Path,
    machines: Sequence[str],
    *,
    deadline: float,
    log_path: Path,
) -> None:
    """Wait (bounded by wall ``deadline``) until status.json shows every machine running."""

    def all_running() -> bool:
        return all(machine_state(state, m) == "running" for m in machines)

    for _ in range(max(0, round((deadline - time.time()) / 0.1)) + 1):
        if all_running() or proc.poll() is not None or time.time() > deadline:
            break
        await asyncio.sleep(0.1)
    if not all_running():
        states = {m: machine_state(state, m) for m in machines}
        pytest.fail(
            f"agent did not report {states} all running by the deadline (exit {proc.poll()}):\n"
            f"{log_path.read_text(errors='replace')[-3000:]}"
        )


async def wait_for_final(
    proc: subprocess.Popen[bytes],
    collector: MqttCollector,
    name: str,
    machines: Sequence[str],
    *,
    deadline: float,
) -> None:
    """Wait (bounded) until the final record of window ``name`` arrived for every machine."""

    def done(ms: list[Received]) -> bool:
        docs = unique_docs(ms)
        return all(final_record(docs, name, m) is not None for m in machines)

    for _ in range(round(deadline - time.time()) + 1):
        if time.time() > deadline or proc.poll() is not None:
            break
        if await asyncio.to_thread(collector.wait_for, done, 1.0):
            break
    # Stop events are enqueued before the record, so they have arrived too; a short
    # grace period lets a QoS 1 redelivery in flight land as well.
    await asyncio.sleep(0.5)


def truth_intervals(truth: list[dict[str, Any]], sim_machine: str = "M1") -> list[dict[str, Any]]:
    """Truth state intervals of one simulated machine, in time order."""
    return [r for r in truth if r.get("type") == "interval" and r["machine"] == sim_machine]


def truth_stops(truth: list[dict[str, Any]], sim_machine: str = "M1") -> list[dict[str, Any]]:
    """Closed non-running truth intervals of one simulated machine, in time order."""
    return [r for r in truth_intervals(truth, sim_machine) if not r["run"] and not r.get("open")]


def truth_sum(items: list[dict[str, Any]]) -> float:
    """Total wall duration of truth intervals."""
    return float(sum(t["end_ts"] - t["start_ts"] for t in items))


def assert_close(got: float, want: float, tol: float, what: str) -> None:
    """``|got - want| <= tol`` with a message naming the quantity."""
    assert abs(got - want) <= tol, (
        f"{what}: agent {got:.3f} s, truth {want:.3f} s, tolerance {tol:.3f} s"
    )


_SUMMARY_KEYS = (
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


def summary(
    label: str,
    rec: dict[str, Any],
    events: list[dict[str, Any]],
    stops: list[dict[str, Any]],
) -> str:
    """A human-readable comparison, printed so that a failure shows the measured errors."""
    lines = [
        label,
        "truth interval            truth_s  agent_s  d_start  d_end   class      fault",
    ]
    for ev, tr in zip(events, stops, strict=False):
        lines.append(
            f"{tr['reason']:>8}/{tr['fault_code']:<3} sim {tr['start_s']:>6.0f}  "
            f"{tr['end_ts'] - tr['start_ts']:7.3f}  {ev['duration_s']:7.3f}  "
            f"{parse_instant(ev['start']) / 1000 - tr['start_ts']:+.3f}  "
            f"{parse_instant(ev['end']) / 1000 - tr['end_ts']:+.3f}  "
            f"{ev['category']:<9}  {ev['code']}"
        )
    lines.append("record: " + json.dumps({k: rec.get(k) for k in _SUMMARY_KEYS}))
    return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tolerances:
    """How close the agent must be to the truth (wall seconds)."""

    sample_s: float
    """One sampling period (poll interval or publishing interval): the bound of every edge."""
    slack_s: float = 0.05
    """Scheduling slack on top of one period for durations (round trip, loop latency)."""
    late_slack_s: float = 0.1
    """How much later than one period an edge may be seen (a late poll under load)."""
    threshold_sim_s: float = 120.0
    """The micro-stop threshold in sim seconds (for the expected class of each stop)."""

    @property
    def edge_tol_s(self) -> float:
        """Tolerance of one duration: one period plus slack."""
        return self.sample_s + self.slack_s

    @property
    def edge_late_s(self) -> float:
        """Latest an edge may be seen after the truth."""
        return self.sample_s + self.late_slack_s


def assert_stops_match(
    events: list[dict[str, Any]], stops: list[dict[str, Any]], tol: Tolerances
) -> None:
    """Stop events, one by one: each edge is seen at the next sample (spec §4, V15)."""
    assert len(events) == len(stops), json.dumps(events, indent=1)
    for ev, tr in zip(events, stops, strict=True):
        label = f"stop {tr['reason']}/{tr['fault_code']} at sim {tr['start_s']} s"
        truth_s = tr["end_ts"] - tr["start_ts"]
        # An edge is never seen before it happens (a few ms for the request round trip).
        start, end = (parse_instant(ev[k]) / 1000 for k in ("start", "end"))
        assert -tol.slack_s <= start - tr["start_ts"] <= tol.edge_late_s, label
        assert -tol.slack_s <= end - tr["end_ts"] <= tol.edge_late_s, label
        assert_close(ev["duration_s"], truth_s, tol.edge_tol_s, f"{label} duration")
        assert ev["category"] == expected_class(tr, tol.threshold_sim_s), label
        assert ev["code"] == (tr["fault_code"] or None), label


def assert_time_identity(rec: dict[str, Any], window_s: float) -> None:
    """Calendar = planned = the window; planned = running + micro + breakdown + other + unknown."""
    assert rec["final"] is True
    assert rec["revision"] == 0
    assert rec["calendar_time_s"] == pytest.approx(window_s, abs=1e-3)
    assert rec["planned_time_s"] == pytest.approx(window_s, abs=1e-3)
    parts = (
        rec["running_time_s"]
        + rec["micro_stop_time_s"]
        + rec["downtime_breakdown_s"]
        + rec["downtime_other_s"]
        + rec["unknown_time_s"]
    )
    assert parts == pytest.approx(rec["planned_time_s"], abs=0.01)


def assert_downtime_matches(
    rec: dict[str, Any],
    events: list[dict[str, Any]],
    stops: list[dict[str, Any]],
    tol: Tolerances,
) -> None:
    """Event counts exact; downtime components and per-code downtime within one period each."""
    by_class: dict[str, list[dict[str, Any]]] = {"micro": [], "breakdown": [], "other": []}
    for tr in stops:
        by_class[expected_class(tr, tol.threshold_sim_s)].append(tr)
    assert rec["micro_stops"] == len(by_class["micro"])
    assert rec["stops"] == len(by_class["breakdown"]) + len(by_class["other"])
    assert rec["failures"] == len(by_class["breakdown"])
    for field_name, cls in (
        ("micro_stop_time_s", "micro"),
        ("downtime_breakdown_s", "breakdown"),
        ("downtime_other_s", "other"),
    ):
        items = by_class[cls]
        assert_close(rec[field_name], truth_sum(items), len(items) * tol.edge_tol_s, field_name)
    by_code = rec["downtime_by_code"]
    long_stops = by_class["breakdown"] + by_class["other"]
    assert set(by_code) == {str(t["fault_code"]) for t in long_stops}
    for code in by_code:
        items = [t for t in long_stops if str(t["fault_code"]) == code]
        assert_close(by_code[code], truth_sum(items), len(items) * tol.edge_tol_s, f"code {code}")
    # The record and the published events are the same measurement.
    published = sum(e["duration_s"] for e in events if e["category"] == "breakdown")
    assert rec["downtime_breakdown_s"] == pytest.approx(published, abs=0.005)
    assert rec["ttr_sum_s"] == pytest.approx(rec["downtime_breakdown_s"], abs=0.005)
    breakdowns = by_class["breakdown"]
    if breakdowns:
        mean = truth_sum(breakdowns) / len(breakdowns)
        assert_close(rec["mttr_s"], mean, tol.edge_tol_s, "mttr_s")


def assert_counts_exact(
    rec: dict[str, Any],
    truth: list[dict[str, Any]],
    *,
    counter_start: int,
    sim_machine: str = "M1",
    max_unattributed: int = 0,
) -> None:
    """Counts: the window's counts equal the truth counters' difference, exactly.

    ``max_unattributed``: parts the run made while its state was unknown (spec §3.7: counted,
    but not attributed to a state); 0 when the state was known throughout.
    """
    last = truth_intervals(truth, sim_machine)[-1]
    assert rec["total_count"] == last["total"] - counter_start
    assert rec["good_count"] == last["good"] - counter_start
    assert rec["unattributed_total_count"] <= max_unattributed
    assert rec["out_of_plan_total_count"] == 0
    if rec["total_count"]:
        assert rec["quality"] == pytest.approx(rec["good_count"] / rec["total_count"], abs=1e-6)
