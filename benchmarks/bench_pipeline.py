"""Pipeline benchmark: buffer ingest rate, outbox drain rate, enqueue-to-subscriber latency.

Three measurements, each printed with its method:

1. **Ingest**: 500,000 readings handed to ``Buffer.add_readings`` in batches of
   1,000 (yielding to the loop between batches, as drivers do; the producer pauses
   while more than 50,000 rows are queued, so nothing is dropped), then ``flush()``;
   rate = readings / wall time until all are committed (WAL, synchronous=NORMAL,
   1,000-row transactions on the writer thread). Target >= 200,000/s.
2. **Drain**: 100,000 telemetry messages already in the outbox (inserted with
   ``publish_many``), then the uplink connects to a private local Mosquitto and
   publishes them QoS 1; rate = messages / time until the outbox is empty (every
   PUBACK received and the rows deleted). Target >= 5,000/s.
3. **Latency**: steady load of 500 telemetry messages/s (batches of 25 every 50 ms)
   plus one KPI record every 20 ms, for 10 s; latency = time from calling
   ``Buffer.publish`` (durable FULL commit included) to arrival at a subscriber on
   the same broker. Median and p99 over the KPI records. Target p99 < 50 ms.

Runs in well under 3 minutes on 2 cores. Loopback only.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from edge_agent.buffer import Buffer, Outgoing, Priority, StorageConfig
from edge_agent.model import Reading
from edge_agent.uplink import MqttConfig, Uplink
from tests.plugins.broker import Mosquitto, MqttCollector, find_mosquitto, free_port

INGEST_ROWS = 500_000
INGEST_BATCH = 1_000
DRAIN_MESSAGES = 100_000
DRAIN_IN_FLIGHT = int(os.environ.get("BENCH_IN_FLIGHT", "100"))
LATENCY_SECONDS = 10.0


def machine() -> str:
    """``nproc`` and the CPU model."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"nproc={os.cpu_count()} cpu={model!r} python={platform.python_version()}"


async def bench_ingest(workdir: Path) -> float:
    """Readings per second through the batched writer."""
    buf = Buffer(StorageConfig(path=workdir / "ingest.db", queue_max_rows=200_000), "bench")
    await buf.open()
    now = time.time()
    batches = [
        [
            Reading(
                device="plc1",
                tag=f"t{i % 50}",
                value=float(i),
                ts=now + b + i * 1e-4,
                mono=float(i),
            )
            for i in range(INGEST_BATCH)
        ]
        for b in range(INGEST_ROWS // INGEST_BATCH)
    ]
    start = time.perf_counter()
    for batch in batches:
        # A producer no faster than the writer: measure what the writer sustains, no drops.
        while buf.stats()["queued_rows"] > 50_000:  # noqa: ASYNC110 - polling a counter is the point
            await asyncio.sleep(0.001)
        buf.add_readings(batch)
        await asyncio.sleep(0)
    await buf.flush()
    elapsed = time.perf_counter() - start
    stats = buf.stats()
    await buf.close()
    dropped = sum(v for k, v in stats["dropped"].items() if k.startswith("readings"))
    rate = INGEST_ROWS / elapsed
    print(
        f"ingest: {rate:,.0f} readings/s ({INGEST_ROWS:,} readings, batches of {INGEST_BATCH}, "
        f"{elapsed:.2f} s, dropped {dropped}) [target >= 200,000/s]"
    )
    return rate


async def drain_backlog(
    buf: Buffer, uplink: Uplink, *, limit_s: float = 120.0
) -> tuple[float, int]:
    """Run the uplink until the outbox is empty (at most ``limit_s``); stop, close.

    Returns (seconds taken, messages left); the buffer is closed afterwards.
    """
    start = time.perf_counter()
    task = asyncio.create_task(uplink.run())
    deadline = start + limit_s
    while buf.backlog and time.perf_counter() < deadline:  # noqa: ASYNC110 - bounded poll
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    left = buf.backlog
    await uplink.stop()
    await task
    await buf.close()
    return elapsed, left


async def bench_drain(workdir: Path, broker: Mosquitto) -> float:
    """Messages per second from a pre-filled outbox to the broker (PUBACK + delete)."""
    buf = Buffer(StorageConfig(path=workdir / "drain.db"), "bench")
    await buf.open()
    for chunk in range(DRAIN_MESSAGES // 1000):
        await buf.publish_many(
            [
                Outgoing(
                    kind="telemetry",
                    topic="edge/bench/bench/telemetry/plc1",
                    data={"device": "plc1", "values": {"speed": chunk * 1000 + i}},
                    priority=Priority.LOW,
                )
                for i in range(1000)
            ]
        )
    uplink = Uplink(
        MqttConfig(port=broker.port, max_in_flight=DRAIN_IN_FLIGHT), buf, "bench", "bench"
    )
    elapsed, left = await drain_backlog(buf, uplink)
    rate = (DRAIN_MESSAGES - left) / elapsed
    print(
        f"drain: {rate:,.0f} messages/s ({DRAIN_MESSAGES:,} message backlog, QoS 1, "
        f"max_in_flight={DRAIN_IN_FLIGHT}, {elapsed:.2f} s incl. connect, {left} left) "
        "[target >= 5,000/s]"
    )
    return rate


async def bench_latency(workdir: Path, broker: Mosquitto) -> tuple[float, float]:
    """Median and p99 enqueue-to-subscriber latency of KPI records under steady telemetry load."""
    buf = Buffer(StorageConfig(path=workdir / "latency.db"), "bench")
    await buf.open()
    uplink = Uplink(MqttConfig(port=broker.port), buf, "bench", "bench")
    task = asyncio.create_task(uplink.run())
    coll = MqttCollector(broker.host, broker.port, "edge/bench/bench/m1/kpi/#", qos=1).start()
    sent: dict[int, float] = {}
    kpi_topic = uplink.topics.kpi(machine="m1", window_kind="hour")
    tele_topic = uplink.topics.telemetry(device="plc1")

    async def telemetry_load(stop_at: float) -> None:
        while time.monotonic() < stop_at:
            await buf.publish_many(
                [
                    Outgoing(
                        kind="telemetry", topic=tele_topic, data={"v": i}, priority=Priority.LOW
                    )
                    for i in range(25)
                ]
            )
            await asyncio.sleep(0.05)

    connect_deadline = time.monotonic() + 10
    while not uplink.state()["connected"] and time.monotonic() < connect_deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    stop_at = time.monotonic() + LATENCY_SECONDS
    load = asyncio.create_task(telemetry_load(stop_at))
    while time.monotonic() < stop_at:
        t0 = time.monotonic()
        seq = await buf.publish("kpi", kpi_topic, {"oee": 0.5}, priority=Priority.HIGH)
        sent[seq] = t0
        await asyncio.sleep(0.02)
    await load
    await asyncio.to_thread(coll.wait_count, len(sent), 10)
    arrivals: dict[int, float] = {}
    for m in coll.snapshot():
        seq = json.loads(m.payload)["seq"]
        arrivals.setdefault(seq, m.at)
    coll.stop()
    await uplink.stop()
    await task
    await buf.close()
    lat = sorted((arrivals[s] - t0) * 1000 for s, t0 in sent.items() if s in arrivals)
    median = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(
        f"latency: median {median:.1f} ms, p99 {p99:.1f} ms, max {lat[-1]:.1f} ms "
        f"over {len(lat)} KPI records ({len(sent) - len(lat)} missing) under 500 telemetry msg/s "
        f"[target p99 < 50 ms]"
    )
    return median, p99


async def run() -> None:
    """All three measurements against one private broker."""
    print(f"bench_pipeline: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        workdir = Path(tmp)
        await bench_ingest(workdir)
        broker = Mosquitto(binary=find_mosquitto(), workdir=workdir, port=free_port())
        broker.start()
        try:
            await bench_drain(workdir, broker)
            await bench_latency(workdir, broker)
        finally:
            broker.stop()


def main() -> None:
    """Entry point called by ``python -m benchmarks``."""
    asyncio.run(run())


if __name__ == "__main__":
    main()
