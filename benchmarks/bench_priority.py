"""Priority drain benchmark: a mixed 100,000-message backlog, drain rate and when the KPIs are out.

Method: 100,000 messages are put in the outbox before the uplink starts (inserted
with ``publish_many`` in chunks of 1,000): every 100th is a KPI record (priority
0: 1,000 in all), every other 250th a health message (priority 5: 200), the rest
telemetry (priority 9), so the KPI and health rows are spread over the whole seq
range. Then the uplink connects to a private local Mosquitto
(``max_in_flight`` 100, ``oldest_first``) and publishes them QoS 1. Two runs:

1. no subscriber (comparable with the telemetry-only drain of ``bench_pipeline``):
   drain rate = messages / time until the outbox is empty (every PUBACK received
   and the row deleted), connect included; target >= 5,000/s;
2. a subscriber in this process records arrival order (it competes for the CPU,
   so the rate is lower): when the last KPI record arrived, in seconds after the
   uplink started, and how many telemetry messages arrived before it (the share
   the scheduler reserves for less important classes).

Loopback only; bounded to about a minute on 2 cores.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from benchmarks.bench_pipeline import drain_backlog, machine
from edge_agent.buffer import Buffer, Outgoing, Priority, StorageConfig
from edge_agent.uplink import MqttConfig, Uplink
from tests.plugins.broker import Mosquitto, MqttCollector, find_mosquitto, free_port

MESSAGES = 100_000
KPI_EVERY = 100
HEALTH_EVERY = 250
IN_FLIGHT = 100


def message(i: int) -> Outgoing:
    """The i-th backlog message (1-based): KPI, health or telemetry by position."""
    if i % KPI_EVERY == 0:
        return Outgoing(
            kind="kpi",
            topic="edge/bench/bench/m1/kpi/hour",
            data={"machine": "m1", "i": i},
            priority=Priority.HIGH,
        )
    if i % HEALTH_EVERY == 0:
        return Outgoing(
            kind="health", topic="edge/bench/bench/health", data={"i": i}, priority=Priority.MEDIUM
        )
    return Outgoing(
        kind="telemetry",
        topic="edge/bench/bench/telemetry/plc1",
        data={"device": "plc1", "values": {"speed": i}},
        priority=Priority.LOW,
    )


async def bench_mixed_drain(workdir: Path, broker: Mosquitto, *, observe: bool) -> float:
    """Drain rate of a mixed backlog and (``observe``) the arrival of its last KPI record."""
    buf = Buffer(StorageConfig(path=workdir / f"prio-{observe}.db"), "bench")
    await buf.open()
    kinds: dict[int, str] = {}
    for first in range(1, MESSAGES + 1, 1000):
        batch = [message(i) for i in range(first, first + 1000)]
        seqs = await buf.publish_many(batch)
        kinds.update(zip(seqs, (m.kind for m in batch), strict=True))
    coll = MqttCollector(broker.host, broker.port, "edge/bench/bench/#", qos=1) if observe else None
    if coll is not None:
        coll.start()
    uplink = Uplink(MqttConfig(port=broker.port, max_in_flight=IN_FLIGHT), buf, "bench", "bench")
    started = time.monotonic()
    elapsed, left = await drain_backlog(buf, uplink)
    rate = (MESSAGES - left) / elapsed
    count = {kind: sum(1 for k in kinds.values() if k == kind) for kind in set(kinds.values())}
    n_kpi = count["kpi"]
    print(
        f"priority drain{' (with subscriber)' if observe else ''}: {rate:,.0f} messages/s "
        f"({MESSAGES:,} message backlog: {n_kpi:,} KPI, {count['health']:,} health, rest "
        f"telemetry; QoS 1, max_in_flight={IN_FLIGHT}, {elapsed:.2f} s incl. connect, "
        f"{left} left){'' if observe else ' [target >= 5,000/s]'}"
    )
    if coll is None:
        return rate
    await asyncio.to_thread(coll.wait_count, MESSAGES, 10)
    got = coll.snapshot()
    coll.stop()
    seen: set[int] = set()
    telemetry_before = 0
    last_kpi_at = float("nan")
    kpi_left = sum(1 for k in kinds.values() if k == "kpi")
    for m in got:
        seq = json.loads(m.payload).get("seq")
        if not isinstance(seq, int) or seq in seen:
            continue
        seen.add(seq)
        if kinds.get(seq) == "kpi":
            kpi_left -= 1
            if kpi_left == 0:
                last_kpi_at = m.at - started
                break
        elif kinds.get(seq) == "telemetry":
            telemetry_before += 1
    print(
        f"priority drain: last of {n_kpi:,} KPI records arrived {last_kpi_at:.2f} s after start, "
        f"after {telemetry_before:,} of {count['telemetry']:,} "
        "telemetry messages (reserved share 1/8 while KPIs wait)"
    )
    return rate


async def run() -> None:
    """The measurement against one private broker."""
    print(f"bench_priority: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-priority-") as tmp:
        workdir = Path(tmp)
        broker = Mosquitto(binary=find_mosquitto(), workdir=workdir, port=free_port())
        broker.start()
        try:
            await bench_mixed_drain(workdir, broker, observe=False)
            await bench_mixed_drain(workdir, broker, observe=True)
        finally:
            broker.stop()


def main() -> None:
    """Entry point called by ``python -m benchmarks``."""
    asyncio.run(run())


if __name__ == "__main__":
    main()
