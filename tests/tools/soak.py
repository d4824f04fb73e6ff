"""A small publisher process for chaos and soak tests: the real Buffer + Uplink, nothing else.

Run as ``python -m tests.tools.soak --db PATH --port PORT --count N`` from the
repository root (a test tool: it is not shipped in the wheel). It
produces messages (kind ``stop``, high priority) into the outbox at ``--rate`` per
second until the outbox has allocated ``N`` sequence numbers in total (across
restarts: the count lives in the database), then waits until everything is
acknowledged and exits 0. SIGTERM/SIGINT stop it cleanly; SIGKILL is what the
chaos test uses. It is a test tool: no config file, loopback by default, and it
prints one ``ready`` line on stdout once the buffer is open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from edge_agent.buffer import Buffer, Priority, StorageConfig
from edge_agent.uplink import MqttConfig, MqttProtocol, Uplink


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m tests.tools.soak", description=__doc__)
    p.add_argument("--db", type=Path, required=True, help="buffer database file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--agent", default="soak")
    p.add_argument("--site", default="lab")
    p.add_argument("--protocol", choices=[m.value for m in MqttProtocol], default="5")
    p.add_argument(
        "--count", type=int, required=True, help="total messages to produce (across restarts)"
    )
    p.add_argument("--rate", type=float, default=200.0, help="messages per second")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    return p


async def produce(args: argparse.Namespace) -> int:
    """Produce, drain, stop; returns the exit code."""
    buf = Buffer(StorageConfig(path=args.db), args.agent)
    await buf.open()
    config = MqttConfig(
        host=args.host,
        port=args.port,
        protocol=MqttProtocol(args.protocol),
        reconnect_min_s=0.2,
        reconnect_max_s=1.0,
    )
    uplink = Uplink(config, buf, args.agent, args.site)
    task = asyncio.create_task(uplink.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    deadline = time.monotonic() + args.timeout
    topic = uplink.topics.stop(machine="m1")
    pid = os.getpid()  # which run produced a message: a reused seq shows two pids
    code = 1
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            if buf.last_seq < args.count:
                n = buf.last_seq + 1
                await buf.publish(
                    "stop", topic, {"machine": "m1", "n": n, "pid": pid}, priority=Priority.HIGH
                )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0 / args.rate)
            elif buf.backlog == 0:
                code = 0
                break
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)
    finally:
        await uplink.stop()
        await task
        await buf.close()
    return code


def main() -> None:
    """Entry point."""
    sys.exit(asyncio.run(produce(build_parser().parse_args())))


if __name__ == "__main__":
    main()
