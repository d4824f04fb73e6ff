"""Kit for crash tests of the real agent: a scripted-stop simulator, agent processes, checks.

The simulator runs a scenario written here: the machine stops with fault 17 every
``period_s`` seconds for ``stop_s`` seconds (sim time = wall time). The agent runs
as a child process (``python -m edge_agent run``) and is killed with SIGKILL by PID.
The checks read what a subscriber received and what ``edge-agent export --kind
intervals`` returns from the buffer.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

SCENARIO_HEAD = """
[scenario]
name = "crashstops"
description = "Scripted: fault 17 every {period_s} s for {stop_s} s"

[machines.M1]
unit_id = 1
ideal_cycle_s = 1.0
cycle_jitter = 0.0
scrap_rate = 0.0

[machines.M1.alarm_bits]
17 = 0
"""

SCENARIO_EVENT = """
[[machines.M1.events]]
at_s = {at_s}
action = "fault"
code = 17
duration_s = {stop_s}
"""

CONFIG = """
[agent]
id = "crash-gw"
site = "test"
state_dir = "{state}"
log_level = "info"
status_interval_s = 0.5

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}

[reporting]
interval_s = {report_s}

[storage]
# Rows wait in RAM up to this long before their batch commits (widens 1b's window).
flush_interval_ms = {flush_ms}

[devices.a]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:{port}"
unit_id = 1
interval_ms = 100
addressing = "zero"

[devices.a.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.a.tags.fault_code]
table = "holding"
address = 2
type = "uint16"

[devices.a.tags.good]
table = "holding"
address = 10
type = "uint32"

{extra_devices}
[machines.a]
run = "a.running"
fault = "{fault_ref}"
good = "a.good"
total = "a.good"
{machine_extra}

[machines.a.kpi]
ideal_cycle_time_s = {ideal_s}
max_gap_s = 2.0
micro_stop_threshold_s = 1.0

[[machines.a.kpi.shifts]]
name = "all"
start = "00:00"
end = "00:00"
"""


#: A second device on the same simulator, polled slowly, with the fault code.
SLOW_DEVICE = """
[devices.slow]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:{port}"
unit_id = 1
interval_ms = {interval_ms}
addressing = "zero"

[devices.slow.tags.fault_code]
table = "holding"
address = 2
type = "uint16"
"""


def write_scenario(path: Path, *, period_s: float, stop_s: float, count: int = 200) -> Path:
    """A scenario file: a stop of ``stop_s`` every ``period_s`` seconds, from ``period_s``."""
    text = SCENARIO_HEAD.format(period_s=period_s, stop_s=stop_s)
    for i in range(1, count + 1):
        text += SCENARIO_EVENT.format(at_s=i * period_s, stop_s=stop_s)
    path.write_text(text)
    return path


def write_config(path: Path, **settings: Any) -> Path:
    """The agent's config file (``state``, ``mqtt_port``, ``port`` required)."""
    values: dict[str, Any] = {
        "report_s": 2.0,
        "flush_ms": 200,
        "ideal_s": 1.0,
        "extra_devices": "",
        "fault_ref": "a.fault_code",
        "machine_extra": "",
        **settings,
    }
    path.write_text(CONFIG.format(**values))
    return path


class AgentProcess:
    """``python -m edge_agent run -c CONFIG`` as a child process, output in ``<state>/../log``."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "-c", str(config)],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
        )

    def kill(self) -> None:
        """SIGKILL by PID and reap."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def hup(self) -> None:
        """SIGHUP (reload)."""
        os.kill(self.proc.pid, signal.SIGHUP)

    def stop(self) -> int:
        """SIGTERM, wait (bounded), SIGKILL when it does not exit; returns the exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return int(self.proc.returncode)

    def output(self) -> str:
        """What the agent logged (all runs sharing the log file)."""
        return self.log_path.read_text(errors="replace")


def status(state: Path) -> dict[str, Any]:
    """The agent's status.json (empty while not written)."""
    try:
        return dict(json.loads((state / "status.json").read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def wait_status(state: Path, predicate: Any, timeout: float) -> dict[str, Any]:
    """Wait (bounded) until status.json satisfies ``predicate``; return it."""
    deadline = time.monotonic() + timeout
    snap: dict[str, Any] = {}
    while time.monotonic() < deadline:
        snap = status(state)
        if snap and predicate(snap):
            return snap
        time.sleep(0.1)
    raise AssertionError(f"status condition not met; last status: {snap}")


def payloads(messages: list[Any], kind: str) -> list[dict[str, Any]]:
    """The envelopes of one kind among the received messages, in arrival order."""
    out = []
    for m in messages:
        try:
            body = json.loads(m.payload)
        except ValueError:
            continue
        if isinstance(body, dict) and body.get("kind") == kind:
            out.append(body)
    return out


def stop_conflicts(stops: list[dict[str, Any]]) -> list[str]:
    """Stop events published with two different closed versions, or reopened after closing.

    An event is identified by ``event_id``; its versions are the open one(s) (``end``
    null) and the closed one. A re-send of the same closed version (QoS 1, or a replay)
    is fine; a second closed version with another end or duration is the defect.
    """
    closed: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    problems: list[str] = []
    for env in stops:
        d = env["data"]
        key = d["event_id"]
        if d["end"] is None:
            if key in closed:
                problems.append(f"{key} reopened (seq {env['seq']}) after it was closed")
            continue
        closed[key].add((d["start"], d["end"], d["duration_s"]))
    problems += [f"{k}: {sorted(v)}" for k, v in closed.items() if len(v) > 1]
    return problems


def export_intervals(db: Path) -> list[dict[str, Any]]:
    """``edge-agent export --kind intervals`` over everything, parsed (JSON lines)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_agent",
            "export",
            "--db",
            str(db),
            "--from",
            "2000-01-01T00:00:00Z",
            "--to",
            "2100-01-01T00:00:00Z",
            "--kind",
            "intervals",
            "--format",
            "jsonl",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def interval_holes(rows: list[dict[str, Any]]) -> list[str]:
    """Places where one machine's intervals do not join (end of one != start of the next)."""
    by_machine: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        data = r["data"] if isinstance(r["data"], dict) else json.loads(r["data"])
        by_machine[str(r["machine"])].append((float(data["start"]), float(data["end"])))
    holes: list[str] = []
    for machine, spans in by_machine.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            if abs(start - end) > 0.0005:
                holes.append(f"{machine}: {end:.3f} -> {start:.3f} ({start - end:+.3f} s)")
    return holes
