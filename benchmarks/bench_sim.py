"""Benchmark: one simulator process serving 50 machines over Modbus TCP and OPC-UA.

Method: start ``python -m simulators run`` with a generated 50-machine scenario (a mix of
steady, micro-stop and breakdown machines) on free loopback ports. In this process, a Modbus
load client reads every machine's 44 holding registers once per second (50 requests/s on one
connection, spread over the second) and an asyncua client subscribes to every variable of
every machine (650 variables, 1000 ms publishing interval). After a warm-up, the simulator
process's CPU time is sampled with psutil over the measurement window (>= 20 s) and reported
as a percentage of one core, with the Modbus poll latency and how many poll rounds fell
behind their 1 s schedule. Runs once at speed 1 (real time) and once at speed 60.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import multiprocessing.queues
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs installed
from asyncua.client.client import Client
from pymodbus.client import AsyncModbusTcpClient

MACHINES = 50
WARMUP_S = 5.0
WINDOW_S = 20.0
ROOT = Path(__file__).resolve().parents[1]
NAMES = (
    "State", "Running", "FaultCode", "AlarmWord", "StatusWord", "GoodCount", "ScrapCount",
    "TotalCount", "Speed", "Temperature", "CycleTime", "StatusText", "RestartCount",
)  # fmt: skip


def _scenario(path: Path) -> None:
    lines = ['[scenario]\nname = "bench50"\ndescription = "50 machines for the benchmark"\n']
    for i in range(1, MACHINES + 1):
        lines.append(f"[machines.M{i}]\nunit_id = {i}\nideal_cycle_s = {1.0 + (i % 5) * 0.5}\n")
        lines.append("scrap_rate = 0.02\n")
        if i % 3 == 1:
            lines.append(f"[machines.M{i}.stochastic]\nmicrostops_per_h = 30\n")
        elif i % 3 == 2:
            lines.append(f"[machines.M{i}.stochastic]\nmtbf_s = 1800\nmttr_s = 300\n")
    path.write_text("".join(lines))


class _Count:
    def __init__(self) -> None:
        self.n = 0

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.n += 1


def _ua_subscriber(endpoint: str, result: multiprocessing.queues.Queue[float]) -> None:
    """Child process: subscribe to every variable, report notifications/s over the window."""
    result.put(asyncio.run(_ua_subscribe(endpoint)))


async def _ua_subscribe(endpoint: str) -> float:
    counter = _Count()
    ua = Client(endpoint)
    await ua.connect()
    try:
        idx = await ua.get_namespace_index("urn:edge-agent:simulator")
        nodes = [ua.get_node(f"ns={idx};s=M{i}.{n}") for i in range(1, MACHINES + 1) for n in NAMES]
        sub = await ua.create_subscription(1000, counter)
        await sub.subscribe_data_change(nodes)
        await asyncio.sleep(WARMUP_S)
        n0, t0 = counter.n, time.monotonic()
        await asyncio.sleep(WINDOW_S)
        return (counter.n - n0) / (time.monotonic() - t0)
    finally:
        await ua.disconnect()


async def _modbus_load(port: int, stop: float, lat: list[float], late: list[int]) -> int:
    c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2.0, retries=0)
    await c.connect()
    errors = 0
    start = time.monotonic()
    rnd = 0
    try:
        while time.monotonic() < stop:
            for unit in range(1, MACHINES + 1):
                due = start + rnd + (unit - 1) / MACHINES
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = time.monotonic()
                rr = await c.read_holding_registers(0, count=44, device_id=unit)
                lat.append(time.monotonic() - t0)
                errors += rr.isError()
            if time.monotonic() > start + rnd + 1.0 + 0.1:
                late[0] += 1
            rnd += 1
    finally:
        c.close()
    return errors


async def _measure(speed: float, workdir: Path) -> dict[str, Any]:
    scen = workdir / "bench50.toml"
    _scenario(scen)
    ready = workdir / f"ready-{speed}.json"
    cmd = [
        sys.executable, "-m", "simulators", "run", "--scenario", str(scen),
        "--modbus-port", "0", "--opcua-port", "0", "--speed", str(speed),
        "--ready-file", str(ready), "--state-dir", str(workdir / "state"),
    ]  # fmt: skip
    proc = subprocess.Popen(  # noqa: ASYNC220, S603  # our own interpreter, started once
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():  # bounded wait for the ready file
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("simulator did not start")
            await asyncio.sleep(0.1)
        info = json.loads(ready.read_text())
        sim = psutil.Process(proc.pid)
        # The OPC-UA subscriber runs in its own process so its notification handling does
        # not delay the Modbus load client (that would be measured as simulator latency).
        ctx = multiprocessing.get_context("spawn")
        result: multiprocessing.queues.Queue[float] = ctx.Queue()
        subscriber = ctx.Process(
            target=_ua_subscriber, args=(info["opcua"]["endpoint"], result), daemon=True
        )
        subscriber.start()
        lat: list[float] = []
        late = [0]
        stop = time.monotonic() + WARMUP_S + WINDOW_S + 1.0
        load = asyncio.create_task(_modbus_load(info["modbus_tcp"]["port"], stop, lat, late))
        await asyncio.sleep(WARMUP_S)
        c0, t0, l0 = sim.cpu_times(), time.monotonic(), len(lat)
        await asyncio.sleep(WINDOW_S)
        c1, t1, l1 = sim.cpu_times(), time.monotonic(), len(lat)
        rss = sim.memory_info().rss
        errors = await load
        notif_rate = await asyncio.to_thread(result.get, True, 60.0)
        subscriber.join(timeout=30)
        cpu = (c1.user + c1.system - c0.user - c0.system) / (t1 - t0)
        window = sorted(lat[l0:l1])
        return {
            "speed": speed,
            "cpu_pct_of_one_core": round(100 * cpu, 1),
            "window_s": round(t1 - t0, 1),
            "modbus_polls_per_s": round((l1 - l0) / (t1 - t0), 1),
            "modbus_latency_ms_median": round(1000 * statistics.median(window), 2),
            "modbus_latency_ms_p99": round(1000 * window[int(0.99 * (len(window) - 1))], 2),
            "modbus_errors": errors,
            "late_rounds": late[0],
            "opcua_notifications_per_s": round(notif_rate, 1),
            "rss_mb": round(rss / 2**20, 1),
        }
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)


def main() -> None:
    """Run the benchmark and print the figures with their method."""
    cpu_model = "unknown"
    with Path("/proc/cpuinfo").open() as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    print(f"bench_sim: {MACHINES} machines, Modbus TCP poll of 44 registers per machine per second")
    print(
        f"  + asyncua subscription to all {MACHINES * 13} variables (1000 ms publishing interval)"
    )
    print(
        f"  simulator CPU via psutil cpu_times over {WINDOW_S:.0f} s after {WARMUP_S:.0f} s warm-up"
    )
    print(f"  machine: nproc={os.cpu_count()}, CPU {cpu_model}")
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as d:
        for speed in (1.0, 60.0):
            r = asyncio.run(_measure(speed, Path(d)))
            print("  " + json.dumps(r))


if __name__ == "__main__":
    main()
