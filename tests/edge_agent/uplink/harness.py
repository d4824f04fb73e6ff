"""Test harness: a Buffer plus an Uplink running as a task against a fixture broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge_agent.buffer import Buffer, StorageConfig
from edge_agent.uplink import MqttConfig, Uplink
from tests.plugins.broker import Received


@dataclass
class Agent:
    """A running buffer + uplink pair."""

    buffer: Buffer
    uplink: Uplink
    task: asyncio.Task[None]

    async def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Poll a condition on the loop, bounded in time (component tests only)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            await asyncio.sleep(0.02)
        return predicate()


@contextlib.asynccontextmanager
async def running_agent(
    db: Path,
    config: MqttConfig,
    *,
    agent_id: str = "gw1",
    site: str = "lab",
    storage: dict[str, Any] | None = None,
) -> AsyncIterator[Agent]:
    """Open a buffer, start an uplink task; stop both on exit (bounded)."""
    buf = Buffer(replace(StorageConfig(path=db, flush_interval_ms=20), **(storage or {})), agent_id)
    await buf.open()
    uplink = Uplink(config, buf, agent_id, site)
    task = asyncio.create_task(uplink.run())
    try:
        yield Agent(buf, uplink, task)
    finally:
        await asyncio.wait_for(uplink.stop(timeout=3.0), 10)
        await asyncio.wait_for(task, 10)
        await buf.close()


def seqs(messages: list[Received], kind: str | None = None) -> list[int]:
    """Sequence numbers of received data messages, in arrival order (duplicates kept)."""
    out = []
    for m in messages:
        body = json.loads(m.payload)
        if "seq" in body and (kind is None or body["kind"] == kind):
            out.append(int(body["seq"]))
    return out


def first_occurrences(values: list[int]) -> list[int]:
    """Values in order of first arrival (QoS 1 duplicates removed)."""
    seen: set[int] = set()
    out = []
    for v in values:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def seen_all(want: set[int]) -> Callable[[list[Received]], bool]:
    """A ``wait_for`` predicate that holds once every seq in ``want`` arrived.

    Incremental: each call parses only the messages that arrived since the last
    call, so waiting for tens of thousands of messages stays linear.
    """
    seen: set[int] = set()
    done = [0]

    def predicate(messages: list[Received]) -> bool:
        for m in messages[done[0] :]:
            seq = json.loads(m.payload).get("seq")
            if isinstance(seq, int):
                seen.add(seq)
        done[0] = len(messages)
        return want <= seen

    return predicate
