"""Benchmark: 100 Modbus devices x 100 registers polled at 1 s, end to end.

Method: a minimal Modbus TCP load server runs in a separate process (so its
CPU is not counted) on 127.0.0.1, listening on several ports, answering
function code 3 for any unit id and counting requests. The agent side builds
real device configs through the config parser, groups them into links with
``build_links`` and runs every link under ``run_link`` (the production
supervisor) into a sink that does what the buffer's ``add_readings`` does:
turn each :class:`Reading` into a row tuple and hand the batch on. After
warm-up cycles it measures, over a fixed number of 1 s cycles: requests per
cycle on the server versus the planner's minimum, process CPU time of the
agent per value, and the agent's peak RSS.

Two layouts are run: 10 gateways x 10 unit ids (10 connections) and 100
endpoints x 1 unit id (100 connections). Bounded to well under a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

DEVICES = 100
REGISTERS = 100
WARMUP_CYCLES = 2
MEASURE_CYCLES = 8


# -- load server (runs in a child process) -------------------------------------------
class _LoadProtocol(asyncio.Protocol):
    requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 12:  # MBAP header (7) + FC3 PDU (5)
            frame, self.buf = self.buf[:12], self.buf[12:]
            tid, _, _, unit, fc, start, count = struct.unpack(">HHHBBHH", frame)
            _LoadProtocol.requests += 1
            words = [(start + i + _LoadProtocol.requests) & 0xFFFF for i in range(count)]
            pdu = struct.pack(f">BB{count}H", fc, 2 * count, *words)
            self.transport.write(struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu)


async def _serve(ports: int) -> None:
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(_LoadProtocol, "127.0.0.1", 0) for _ in range(ports)]
    print(" ".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        print(_LoadProtocol.requests, flush=True)


# -- agent side ---------------------------------------------------------------------------
class _BufferLikeSink:
    """Does what the buffer's add_readings does with a batch: rows out of Reading objects."""

    def __init__(self) -> None:
        self.values = 0
        self.pending: list[tuple[Any, ...]] = []
        self.target = 0
        self.reached = asyncio.Event()

    def put_readings(self, readings: Sequence[Any]) -> None:
        rows = [
            (r.device, r.tag, r.ts, r.mono, r.value, r.quality.value, r.reason) for r in readings
        ]
        self.values += len(rows)
        self.pending = rows  # handed on; the writer thread would take it from here
        if self.values >= self.target:
            self.reached.set()

    async def wait_values(self, target: int, timeout_s: float) -> None:
        """Wait until ``target`` values were delivered in total."""
        self.target = target
        self.reached.clear()
        if self.values < target:
            await asyncio.wait_for(self.reached.wait(), timeout_s)

    def put_comms(self, event: Any) -> None:
        pass

    def put_confirmation(self, confirmation: Any) -> None:
        pass


def _devices(ports: Sequence[int], units_per_port: int) -> list[Any]:
    from drivers.modbus.config import parse_device
    from edge_agent.configkit import Issues, Table

    issues = Issues("bench.toml")
    out = []
    for p, port in enumerate(ports):
        for u in range(units_per_port):
            name = f"d{p}_{u}"
            data = {
                "protocol": "modbus_tcp",
                "endpoint": f"127.0.0.1:{port}",
                "unit_id": u + 1,
                "interval_ms": 1000,
                "addressing": "zero",
                "timeout_ms": 500,
                "tags": {f"r{i}": {"table": "holding", "address": i} for i in range(REGISTERS)},
            }
            out.append(parse_device(name, Table(data, f"devices.{name}", issues)))
    issues.raise_if_any()
    return out


async def _run_layout(
    server: subprocess.Popen[str], ports: Sequence[int], units: int
) -> dict[str, float]:
    from drivers.base import run_link
    from drivers.modbus.link import build_links
    from drivers.modbus.planner import plan_device

    stdin, stdout = server.stdin, server.stdout
    if stdin is None or stdout is None:
        raise RuntimeError("load server pipes missing")

    def server_requests() -> int:
        stdin.write("\n")
        stdin.flush()
        return int(stdout.readline())

    devices = _devices(ports, units)
    minimum = sum(math.ceil(REGISTERS / 125) for _ in devices)
    planned = sum(plan_device(d).requests_per_cycle[1000] for d in devices)
    links = build_links(devices)
    sink = _BufferLikeSink()
    tasks = [
        asyncio.create_task(run_link(link, sink, tags_by_device=link.tags_by_device))
        for link in links
    ]
    total = DEVICES * REGISTERS
    try:
        await sink.wait_values(WARMUP_CYCLES * total, 30)
        req0, cpu0, values0, wall0 = (
            server_requests(),
            time.process_time(),
            sink.values,
            time.monotonic(),
        )
        await sink.wait_values(values0 + MEASURE_CYCLES * total, MEASURE_CYCLES + 30)
        req1, cpu1, values1, wall1 = (
            server_requests(),
            time.process_time(),
            sink.values,
            time.monotonic(),
        )
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    cycles = (values1 - values0) / total
    skipped = sum(d.skipped_cycles for link in links for d in link.diagnostics().values())
    return {
        "links": len(links),
        "cycles": cycles,
        "wall_s": wall1 - wall0,
        "requests_per_cycle": (req1 - req0) / cycles,
        "planned": planned,
        "minimum": minimum,
        "cpu_us_per_value": (cpu1 - cpu0) * 1e6 / (values1 - values0),
        "skipped_cycles": skipped,
    }


def _start_server(ports: int) -> tuple[subprocess.Popen[str], list[int]]:
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and file
        [sys.executable, os.path.abspath(__file__), "--serve", str(ports)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    if proc.stdout is None:
        raise RuntimeError("load server stdout missing")
    return proc, [int(p) for p in proc.stdout.readline().split()]


def _stop_server(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


def main() -> None:
    """Run both layouts and print the figures with their method."""
    print("Modbus driver: 100 devices x 100 holding registers (uint16) at 1 s, loopback TCP")
    print(
        f"  load server in a separate process; {WARMUP_CYCLES} warm-up"
        f" + {MEASURE_CYCLES} measured cycles"
    )
    print("  CPU = agent process CPU time (user+sys) / values delivered to a buffer-like sink")
    for ports, units in ((10, 10), (100, 1)):
        proc, port_list = _start_server(ports)
        try:
            r = asyncio.run(_run_layout(proc, port_list, units))
        finally:
            _stop_server(proc)
        print(
            f"  {ports} endpoint(s) x {units} unit(s) = {int(r['links'])} links:"
            f" requests/cycle {r['requests_per_cycle']:.1f} (planned {int(r['planned'])},"
            f" minimum {int(r['minimum'])}); CPU {r['cpu_us_per_value']:.2f} us/value;"
            f" {r['cycles']:.0f} cycles in {r['wall_s']:.1f} s;"
            f" skipped cycles {int(r['skipped_cycles'])}"
        )
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"  peak RSS of the agent process: {peak_kib / 1024:.1f} MiB")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        asyncio.run(_serve(int(sys.argv[2])))
    else:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        main()
