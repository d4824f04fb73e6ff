"""A flat signal is not a missing signal: OPC-UA subscriptions against the bundled simulator.

Issue 23. Report-by-exception only reports changes; a healthy subscription still
speaks at least once per keepalive period, and every publish response (data or
keepalive) confirms the unchanged values. The agent must therefore know the
machine's state the whole time a subscription is healthy, however long its
signals stay flat, and must call the time unknown within one keepalive bound
of a server that stops publishing.

One agent process, two OPC-UA servers from the bundled simulator, both playing
the ``flat`` scenario on a shared gated clock at 20x: the run bit stays 1 for
300 s, fault 9 stops the machine for 120 s, then it runs to 600 s; a part takes
80 s, so the counters too stay flat between parts (longer than ``max_gap_s``
and ``signal_max_age_s``). Server ``flat`` is healthy; server ``silent`` stops
answering Publish requests (no data, no keepalive; reads still work) from
150 s to 250 s, the scenario's ``[opcua] publish_stalls`` quirk.

Agent side, in wall seconds: subscriptions at 100 ms with ``watchdog_s = 3``, so
the keepalive count is 10 (a keepalive every 1.0 s) and the keepalive bound is
2.0 s (``keepalive + max(keepalive / 2, 1 s)``); ``max_gap_s`` and
``signal_max_age_s`` are 3 s; the micro-stop threshold is 60 sim s (3 s).
A contract report window spans the run; the test reads the final record and the
stop events from the broker and the state intervals and readings with
``edge-agent export``, then compares them with the two truth files:

* healthy server: no unknown time after the release (at most one keepalive),
  the 120 s stop is one breakdown with code 9 within one publishing interval,
  counts exact, and the flat stretches cost no stored readings (confirmations
  are not readings);
* silent server: the unknown time starts within one keepalive bound after the
  server went silent and ends when publishing resumes (after the watchdog
  rebuilt the session); the later breakdown and the counts are still exact.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from simulators.host import SimulatorHost
from simulators.scenario import OpcuaQuirks, load_scenario
from simulators.truth import read_truth
from tests.edge_agent.uplink.schemas import validate
from tests.integration.sim_config import agent_section, machine_section, opcua_device
from tests.integration.truth_kit import (
    GatedClock,
    Tolerances,
    agent_status,
    assert_counts_exact,
    assert_stops_match,
    assert_time_identity,
    contract_window,
    ended_stops,
    final_record,
    spawn_agent,
    stop_agent,
    summary,
    truth_stops,
    unique_docs,
    wait_for_final,
    wait_until_running,
)
from tests.plugins.broker import Mosquitto, MqttCollector

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SPEED = 20.0
HOLD_SIM_S = 600.0
INTERVAL_S = 0.1
"""Publishing interval (wall seconds)."""
WATCHDOG_S = 3.0
KEEPALIVE_S = 1.0
"""interval x keepalive count = 0.1 s x int(3 s / 3 / 0.1 s)."""
BOUND_S = 2.0
"""Keepalive bound: values confirmed by a publish response stay confirmed this long."""
MAX_GAP_S = 3.0
STARTUP_S = 15.0
"""Longest the agent may take to show both machines running (the window is fixed before)."""
END_MARGIN_S = 3.0
FINAL_WAIT_S = 15.0
TOL = Tolerances(sample_s=INTERVAL_S, slack_s=0.05, late_slack_s=0.1, threshold_sim_s=60.0)
"""One publishing interval per edge, as the Modbus truth test allows one poll."""
MACHINES = {"flat": "ua_flat", "silent": "ua_silent"}

KPI = """
ideal_cycle_time_s = {ict}
micro_stop_threshold_s = {threshold}
max_gap_s = {max_gap}
timezone = "UTC"

[[machines.{machine}.kpi.planned_windows]]
start = "{start}"
end = "{end}"
"""


@dataclasses.dataclass(slots=True)
class Run:
    """What the run produced."""

    window: str
    start: float
    end: float
    released_at: float
    first_sample: dict[str, float]
    """Time of each machine's first good sample (status.json ``since`` before the release)."""
    status_at_end: dict[str, Any]
    """status.json after the final records (the sim holds a flat run)."""
    docs: list[dict[str, Any]]
    truth: dict[str, list[dict[str, Any]]]
    intervals: list[dict[str, Any]]
    readings: list[dict[str, Any]]
    exit_code: int
    log: str


def export(state: Path, kind: str, start: float, end: float) -> list[dict[str, Any]]:
    """Rows of one kind from the agent's buffer, through ``edge-agent export`` (read-only)."""
    iso = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (start - 1, end + 5)]
    out = subprocess.run(
        [
            *(sys.executable, "-m", "edge_agent", "export", "--db", str(state / "buffer.db")),
            *("--from", iso[0], "--to", iso[1], "--kind", kind, "--format", "jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


async def run_flat(tmp_path: Path, mosquitto: Mosquitto) -> Run:
    """Play the flat scenario on a healthy and a stalling server until the final records."""
    state = tmp_path / "state"
    log_path = tmp_path / "agent.log"
    clock = GatedClock(SPEED, HOLD_SIM_S)
    flat = load_scenario("flat")
    healthy = dataclasses.replace(flat, opcua=OpcuaQuirks())
    common: dict[str, Any] = {
        "clock": clock,
        "seed": 3,
        "tick_s": 0.02,
        "opcua": ("127.0.0.1", 0),
        "state_dir": tmp_path / "sim-state",
    }
    async with (
        SimulatorHost(healthy, truth_path=tmp_path / "flat.jsonl", **common) as sim_flat,
        SimulatorHost(flat, truth_path=tmp_path / "silent.jsonl", **common) as sim_silent,
    ):
        # The window is fixed in the config: from now (the servers are up) to the latest end.
        now = time.time()
        start, end, window = contract_window(
            now - 1, now + STARTUP_S + HOLD_SIM_S / SPEED + END_MARGIN_S
        )
        text = agent_section(
            agent_id="keepalive-gw",
            state=state,
            mqtt_port=mosquitto.port,
            windows="[]",
            allowed_lateness_s=1.0,
            status_interval_s=0.5,
            contract=(start, end),
            health_interval_s=1.0,
        )
        for machine, sim in (("flat", sim_flat), ("silent", sim_silent)):
            device = MACHINES[machine]
            text += opcua_device(
                device,
                endpoint=sim.opcua_endpoint,
                mode="subscribe",
                interval_ms=round(INTERVAL_S * 1000),
                watchdog_s=WATCHDOG_S,
            )
            kpi = KPI.format(
                ict=80 / SPEED,
                threshold=60 / SPEED,
                max_gap=MAX_GAP_S,
                machine=machine,
                start=start.isoformat(),
                end=end.isoformat(),
            )
            text += machine_section(machine, device=device, kpi=kpi, signal_max_age_s=MAX_GAP_S)
        config = tmp_path / "agent.toml"
        config.write_text(text)
        with MqttCollector("127.0.0.1", mosquitto.port, "#") as collector:
            proc = spawn_agent(config, log_path)
            try:
                await wait_until_running(
                    proc,
                    state,
                    list(MACHINES),
                    deadline=end.timestamp() - HOLD_SIM_S / SPEED - END_MARGIN_S,
                    log_path=log_path,
                )
                await asyncio.sleep(2 * INTERVAL_S)
                machines = agent_status(state)["machines"]
                first_sample = {m: float(machines[m]["since"]) for m in MACHINES}
                clock.release()
                await wait_for_final(
                    proc,
                    collector,
                    window,
                    list(MACHINES),
                    deadline=end.timestamp() + FINAL_WAIT_S,
                )
                status_at_end = agent_status(state)
            finally:
                exit_code = stop_agent(proc)
            docs = unique_docs(collector.snapshot())
    a, b = start.timestamp(), end.timestamp()
    return Run(
        window=window,
        start=a,
        end=b,
        released_at=clock.released_at,
        first_sample=first_sample,
        status_at_end=status_at_end,
        docs=docs,
        truth={
            "flat": read_truth(tmp_path / "flat.jsonl"),
            "silent": read_truth(tmp_path / "silent.jsonl"),
        },
        intervals=export(state, "intervals", a, b),
        readings=export(state, "readings", a, b),
        exit_code=exit_code,
        log=log_path.read_text(errors="replace")[-4000:],
    )


def unknown_after_first_sample(run: Run, rec: dict[str, Any], machine: str) -> float:
    """The record's unknown time minus the start of the window before the first sample."""
    return float(rec["unknown_time_s"]) - (run.first_sample[machine] - run.start)


def unknown_spans(run: Run, machine: str) -> list[tuple[float, float]]:
    """UNKNOWN state intervals of ``machine`` after the release, clipped to the window."""
    spans = []
    for row in run.intervals:
        data = row["data"]
        if row["machine"] != machine or data["state"] != "unknown":
            continue
        lo, hi = max(data["start"], run.released_at), min(data["end"], run.end)
        if hi > lo:
            spans.append((lo, hi))
    return spans


def confirmations(docs: list[dict[str, Any]]) -> dict[str, dict[str, set[str]]]:
    """Per machine and device: the ``confirmed_by`` values its "so far" records carried."""
    out: dict[str, dict[str, set[str]]] = {}
    for d in docs:
        data = d.get("data") or {}
        if d.get("kind") == "kpi" and not data.get("final"):
            for device, by in (data.get("confirmed_by") or {}).items():
                out.setdefault(data["machine"], {}).setdefault(device, set()).add(by)
    return out


async def test_flat_signals_stay_known_and_a_silent_server_becomes_unknown(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Healthy: no unknown time, breakdown and counts exact. Silent: unknown within one bound."""
    run = await run_flat(tmp_path, mosquitto)
    assert run.exit_code == 0, run.log
    window_s = run.end - run.start
    report = []
    for machine in MACHINES:
        rec = final_record(run.docs, run.window, machine)
        assert rec is not None, f"no final record of {run.window} for {machine}:\n{run.log}"
        events = ended_stops(run.docs, machine)
        stops = truth_stops(run.truth[machine])
        report.append(summary(f"{machine}: {run.window}", rec, events, stops))
        report.append(
            f"  unknown after the first sample: {unknown_after_first_sample(run, rec, machine):.3f}"
            f" s; closed unknown intervals after the release: {unknown_spans(run, machine)}"
        )
    stall = next(r for r in run.truth["silent"] if r.get("type") == "opcua_stall")
    spans = unknown_spans(run, "silent")
    if spans:
        report.append(
            f"silent: publishing stalled {stall['end_ts'] - stall['start_ts']:.3f} s; unknown "
            f"from {spans[0][0] - stall['start_ts']:+.3f} s after the stall began to "
            f"{spans[-1][1] - stall['end_ts']:+.3f} s after it ended (keepalive bound {BOUND_S} s)"
        )
    print("\n".join(report))

    # --- Healthy server: a flat run is a known run. ---
    rec = final_record(run.docs, run.window, "flat")
    assert rec is not None
    truth = run.truth["flat"]
    stops = truth_stops(truth)
    assert [(s["state"], s["fault_code"]) for s in stops] == [("down", 9)]
    assert_time_identity(rec, window_s)
    # The engine works in whole milliseconds.
    assert -0.001 <= unknown_after_first_sample(run, rec, "flat") <= KEEPALIVE_S
    events = ended_stops(run.docs, "flat")
    assert_stops_match(events, stops, TOL)
    assert rec["failures"] == 1
    assert rec["micro_stops"] == 0
    assert rec["downtime_by_code"].keys() == {"9"}
    assert_counts_exact(rec, truth, counter_start=0)
    assert rec["total_count"] >= 5
    assert "counts_span_unknown" not in rec["flags"]
    # Confirmations are not readings: the flat stretches stored nothing per keepalive.
    flat_rows = [r for r in run.readings if r["device"] == "ua_flat"]
    changes = 4 + 2 * 2 + 2 * rec["total_count"]  # first values, stop edges, counters
    assert len(flat_rows) <= changes, f"{len(flat_rows)} readings stored for {changes} changes"

    # --- "So far" records say how the values were confirmed (flat line vs dead link). ---
    seen = confirmations(run.docs)
    assert "keepalive" in seen["flat"][MACHINES["flat"]], seen
    assert "lapsed" in seen["silent"][MACHINES["silent"]], seen
    assert "confirmed_by" not in rec, "final records leave the moment's confirmation out"

    # --- Silent server: unknown from one keepalive bound after the silence to its end. ---
    rec = final_record(run.docs, run.window, "silent")
    assert rec is not None
    truth = run.truth["silent"]
    assert not stall.get("open")
    assert spans, "the silent server's time was never unknown"
    onset, resumed = spans[0][0], spans[-1][1]
    # The bound runs from the last publish response, at most one keepalive before the stall
    # (or a few ms after it: one in flight); the link looks every publishing interval; plus
    # 0.3 s of scheduling slack on a loaded machine.
    assert 0.0 <= onset - stall["start_ts"] <= BOUND_S + INTERVAL_S + 0.3, spans
    # Known again when publishing resumes (the watchdog has rebuilt the session meanwhile;
    # the reconnect backoff is at most 1 s at this point).
    assert stall["end_ts"] - 0.05 <= resumed <= stall["end_ts"] + 1.5, spans
    unknown = unknown_after_first_sample(run, rec, "silent")
    assert unknown == pytest.approx(sum(hi - lo for lo, hi in spans), abs=0.01)
    assert unknown == pytest.approx(resumed - onset, abs=KEEPALIVE_S)
    assert_time_identity(rec, window_s)
    stops = truth_stops(truth)
    assert [(s["state"], s["fault_code"]) for s in stops] == [("down", 9)]
    assert_stops_match(ended_stops(run.docs, "silent"), stops, TOL)
    # Parts made while publishing stalled (one every 80 s) are counted, not attributed.
    in_stall = int((stall["end_s"] - stall["start_s"]) // 80) + 1
    assert_counts_exact(rec, truth, counter_start=0, max_unattributed=in_stall)
    assert "counts_span_unknown" in rec["flags"]

    # --- A technician can tell the flat line from the dead link (status.json and health). ---
    health = [d for d in run.docs if d.get("kind") == "health"]
    assert len(health) >= 10
    for doc in health:
        validate(doc)  # as emitted by the running agent
    seen = {
        dev: {d["data"]["devices"][dev]["confirmed_by"] for d in health}
        for dev in MACHINES.values()
    }
    assert "keepalive" in seen["ua_flat"]
    assert "lapsed" not in seen["ua_flat"]
    assert {"keepalive", "lapsed"} <= seen["ua_silent"]
    devices = run.status_at_end["devices"]
    for dev in MACHINES.values():
        diag = devices[dev]["diagnostics"]
        # The held sim is flat: values confirmed by keepalive, unchanged for seconds.
        assert diag["confirmed_by"] == "keepalive", diag
        assert diag["last_confirmed_ts"] - diag["last_change_ts"] > 2 * KEEPALIVE_S, diag
        assert diag["confirmed_until_ts"] == pytest.approx(diag["last_confirmed_ts"] + BOUND_S)
    assert devices["ua_silent"]["diagnostics"]["errors"]["keepalive"] == 1
