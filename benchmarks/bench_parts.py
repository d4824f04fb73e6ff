"""Where a gateway's CPU goes: two parts of the per-value cost measured alone.

1. **Buffer writer**: ``Buffer.add_readings`` fed 100 polls of 125 good integer
   readings per second (one poll every 10 ms, one time per poll, as the Modbus
   driver stamps a block read) for 9 s after a 3 s warm-up; CPU of the process
   minus CPU of the feeding (main) thread = the writer thread, per reading.
2. **MQTT publish**: paho publishes 5,000 QoS 1 messages of 1,300 bytes (a
   100 x 125 gateway's telemetry message size) to a private Mosquitto in bursts
   of 100 and waits for every PUBACK; process CPU (both paho threads) per
   message. This is the library's cost per message, outside the agent's code.

Loopback only, every wait bounded, the broker stopped by PID. About 20 s.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_pipeline import machine
from edge_agent.buffer import Buffer, StorageConfig
from edge_agent.model import Reading
from tests.plugins.broker import Mosquitto, find_mosquitto, free_port

DEVICES = 100
REGISTERS = 125
WARMUP_S = 3
MEASURE_S = 9
MESSAGES = 5_000
PAYLOAD_BYTES = 1_300


async def writer_us_per_value(workdir: Path) -> float:
    """Writer-thread CPU per reading at 12,500 readings/s."""
    buf = Buffer(StorageConfig(path=workdir / "writer.db"), "bench")
    await buf.open()
    try:
        c0 = m0 = 0.0
        for second in range(WARMUP_S + MEASURE_S):
            if second == WARMUP_S:
                c0, m0 = time.process_time(), time.thread_time()
            t0 = time.monotonic()
            for dev in range(DEVICES):
                ts, mono = time.time(), time.monotonic()
                buf.add_readings(
                    [
                        Reading(f"d{dev}", f"r{r}", (second * 7 + r) & 0xFFFF, ts, mono)
                        for r in range(REGISTERS)
                    ]
                )
                await asyncio.sleep(0.9 / DEVICES)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
        c1, m1 = time.process_time(), time.thread_time()
    finally:
        await buf.close()
    return ((c1 - c0) - (m1 - m0)) / (MEASURE_S * DEVICES * REGISTERS) * 1e6


def paho_us_per_message(port: int) -> tuple[float, int]:
    """CPU of paho (both threads) per QoS 1 message, and how many were acknowledged."""
    import paho.mqtt.client as mqtt  # type: ignore[import-untyped,unused-ignore]
    from paho.mqtt.enums import CallbackAPIVersion

    acked = 0
    done = threading.Event()

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1
        if acked >= MESSAGES:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-parts")
    client.on_publish = on_publish
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        payload = b"x" * PAYLOAD_BYTES
        c0 = time.process_time()
        for i in range(MESSAGES):
            client.publish("bench/parts", payload, qos=1)
            if i % 100 == 99:
                time.sleep(0.01)
        done.wait(60)
        c1 = time.process_time()
    finally:
        client.disconnect()
        client.loop_stop()
    return (c1 - c0) / MESSAGES * 1e6, acked


def main() -> None:
    """Entry point called by ``python -m benchmarks``."""
    print(f"bench_parts: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-parts-") as tmp:
        workdir = Path(tmp)
        writer = asyncio.run(writer_us_per_value(workdir))
        print(
            f"buffer writer: {writer:.2f} us CPU per reading at {DEVICES * REGISTERS:,} "
            f"readings/s ({DEVICES} polls of {REGISTERS} per second, {MEASURE_S} s)"
        )
        broker = Mosquitto(binary=find_mosquitto(), workdir=workdir, port=free_port())
        broker.start()
        try:
            per_message, acked = paho_us_per_message(broker.port)
        finally:
            broker.stop()
        print(
            f"paho publish: {per_message:.0f} us CPU per QoS 1 message of {PAYLOAD_BYTES:,} "
            f"bytes ({acked:,} of {MESSAGES:,} acknowledged; = "
            f"{per_message / REGISTERS:.2f} us per value at {REGISTERS} values per message)"
        )
