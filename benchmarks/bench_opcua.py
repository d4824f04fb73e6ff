"""OPC-UA driver cost: client CPU per data-change notification, end to end, and peak RSS.

Setup: an asyncua server in a *separate process* (its CPU is not counted)
exposes 20 machines x 10 Double variables and writes all 200 every 100 ms
(2,000 changes/s). The measured process runs 20 :class:`OpcuaLink` sessions
(one per machine, as with 20 PLCs; each subscribes to its 10 variables at a
100 ms publishing interval, queue size 1) under :func:`drivers.base.run_link`
into a counting sink. After a warm-up, ``time.process_time()`` (user+system
CPU of the whole client process: asyncua decoding, our conversion to
``Reading``, the sink) is divided by the number of readings delivered.
Peak RSS is ``ru_maxrss`` of the client process. Loopback only; bounded to
about 40 s.

Run: ``python -m benchmarks opcua`` (or ``python -m benchmarks.bench_opcua``).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

MACHINES = 20
VARIABLES = 10
CHANGE_PERIOD_S = 0.1
WARMUP_S = 5.0
MEASURE_S = 20.0
NS_URI = "urn:edge-agent:bench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _serve(port: int) -> None:
    """Server process: 20 x 10 Doubles, all rewritten every 100 ms, until stdin closes."""
    import logging

    from asyncua import ua
    from asyncua.server.server import Server

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench/")
    ns = await server.register_namespace(NS_URI)
    ids: list[ua.NodeId] = []
    for m in range(MACHINES):
        obj = await server.nodes.objects.add_object(
            ua.NodeId(ua.String(f"M{m}"), ua.Int16(ns)), f"M{m}"
        )
        for v in range(VARIABLES):
            node = await obj.add_variable(
                ua.NodeId(ua.String(f"M{m}.V{v}"), ua.Int16(ns)),
                f"V{v}",
                0.0,
                ua.VariantType.Double,
            )
            ids.append(node.nodeid)
    async with server:
        print("READY", flush=True)
        loop = asyncio.get_running_loop()
        stdin_closed = loop.run_in_executor(None, sys.stdin.read)
        k = 0
        next_t = loop.time()
        while not stdin_closed.done():
            k += 1
            for i, nid in enumerate(ids):
                await server.write_attribute_value(
                    nid, ua.DataValue(ua.Variant(float(k + i), ua.VariantType.Double))
                )
            next_t += CHANGE_PERIOD_S
            await asyncio.sleep(max(0.0, next_t - loop.time()))


class _CountingSink:
    def __init__(self) -> None:
        self.readings = 0
        self.events = 0
        self.confirmations = 0

    def put_readings(self, readings: Sequence[object]) -> None:
        self.readings += len(readings)

    def put_comms(self, event: object) -> None:
        self.events += 1

    def put_confirmation(self, confirmation: object) -> None:
        self.confirmations += 1


async def _measure(port: int) -> dict[str, float]:
    from drivers.base import Backoff, run_link
    from drivers.opcua.config import OpcuaDevice, OpcuaTag
    from drivers.opcua.link import OpcuaLink
    from drivers.opcua.nodes import parse_node_id

    links = []
    for m in range(MACHINES):
        tags = tuple(
            OpcuaTag(name=f"v{v}", node=parse_node_id(f"nsu={NS_URI};s=M{m}.V{v}"))
            for v in range(VARIABLES)
        )
        # A distinct endpoint path per machine gives one session each, like 20 PLCs.
        device = OpcuaDevice(
            name=f"m{m}",
            endpoint=f"opc.tcp://127.0.0.1:{port}/bench/m{m}",
            tags=tags,
            interval_ms=100,
        )
        links.append(OpcuaLink([device]))
    sink = _CountingSink()
    tasks = [
        asyncio.create_task(
            run_link(link, sink, tags_by_device={}, backoff=Backoff(initial_s=0.2, max_s=1.0))
        )
        for link in links
    ]
    try:
        await asyncio.sleep(WARMUP_S)
        n0, c0, t0 = sink.readings, time.process_time(), time.monotonic()
        await asyncio.sleep(MEASURE_S)
        n1, c1, t1 = sink.readings, time.process_time(), time.monotonic()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    wall, cpu, count = t1 - t0, c1 - c0, n1 - n0
    return {
        "notifications": count,
        "rate_per_s": count / wall,
        "cpu_s": cpu,
        "cpu_pct_one_core": 100 * cpu / wall,
        "us_per_notification": 1e6 * cpu / count if count else float("nan"),
        "comms_events": sink.events,
    }


def main() -> None:
    """Start the server process, measure the client, print the figures and the method."""
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "benchmarks.bench_opcua", "--serve", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None  # noqa: S101
        line = server.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"benchmark server did not start: {line!r}")
        figures = asyncio.run(_measure(port))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        "OPC-UA driver: 20 sessions x 10 Double variables, all changing every 100 ms "
        "(server in another process)"
    )
    print(
        f"  notifications delivered: {figures['notifications']:.0f} in {MEASURE_S:.0f} s "
        f"({figures['rate_per_s']:.0f}/s, expected {MACHINES * VARIABLES / CHANGE_PERIOD_S:.0f}/s)"
    )
    print(
        f"  client CPU: {figures['cpu_s']:.2f} s = {figures['cpu_pct_one_core']:.1f} % of one core"
    )
    print(
        "  CPU per notification (end to end, notification -> Reading in sink): "
        f"{figures['us_per_notification']:.1f} us"
    )
    print(
        f"  client peak RSS: {rss_mb:.0f} MB; "
        f"comms events: {figures['comms_events']:.0f} (20 UP expected)"
    )
    print(
        "  method: time.process_time() of the client process over the window / readings "
        "delivered; peak RSS = ru_maxrss"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        asyncio.run(_serve(int(sys.argv[2])))
    else:
        main()
