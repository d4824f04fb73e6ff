"""The telemetry pump: clock flag, slices of commits, nothing lost when the engine changes."""

from __future__ import annotations

import json
from collections.abc import Sequence

from edge_agent.buffer import Outgoing
from edge_agent.model import Reading
from edge_agent.ops.clock import ClockWatch
from edge_agent.ops.tuning import TELEMETRY_VALUES_PER_COMMIT
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.outgoing.telemetry import TelemetryPump
from edge_agent.telemetry import PublishMode, PublishPolicy, TelemetryEngine
from edge_agent.uplink import TopicTemplates

T0 = 1_764_151_200.0


class FakeBuffer:
    """Records each commit (pure pump logic; the real outbox is tested with the buffer)."""

    def __init__(self) -> None:
        self.batches: list[list[Outgoing]] = []

    async def publish_many(self, messages: Sequence[Outgoing]) -> list[int]:
        """Record one commit."""
        self.batches.append(list(messages))
        return list(range(len(messages)))

    def cut(self) -> None:
        """No frames here: messages are stored as text."""


def pump(devices: int, tags: int, synced: list[bool | None]) -> tuple[TelemetryPump, FakeBuffer]:
    policies = {
        (f"d{d}", f"t{t}"): PublishPolicy(mode=PublishMode.EVERY)
        for d in range(devices)
        for t in range(tags)
    }
    buf = FakeBuffer()
    staging = OutboxStaging(buf, TopicTemplates.create(site="lab", agent="gw"))  # type: ignore[arg-type]
    engine = TelemetryEngine(policies, publish_interval_s=1.0)
    return TelemetryPump(engine, staging, ClockWatch(lambda: synced[0], 0.0)), buf


def poll(device: str, tags: int, t: float) -> list[Reading]:
    return [Reading(device, f"t{i}", i, t, t - T0) for i in range(tags)]


def data(buf: FakeBuffer) -> list[dict[str, object]]:
    return [json.loads(str(m.data)) for batch in buf.batches for m in batch]


async def test_messages_built_while_the_clock_is_unsynchronised_are_flagged() -> None:
    """Known unsynchronised: clock_unsynced true; synchronised or unknown: no flag."""
    synced: list[bool | None] = [False]
    p, buf = pump(1, 1, synced)
    assert p.engine is not None
    p.engine.ingest(poll("d0", 1, T0))
    await p.round(T0 + 5)
    assert [d.get("clock_unsynced") for d in data(buf)] == [True]
    for state in (True, None):
        synced[0] = state
        buf.batches.clear()
        p.engine.ingest(poll("d0", 1, T0 + 10))
        await p.round(T0 + 15 + (state is None) * 10)
        assert [d.get("clock_unsynced") for d in data(buf)] == [None]


async def test_a_large_round_is_committed_a_slice_at_a_time() -> None:
    """Every TELEMETRY_VALUES_PER_COMMIT values the staged messages are committed."""
    per_commit = TELEMETRY_VALUES_PER_COMMIT // 125
    devices = 2 * per_commit
    p, buf = pump(devices, 125, [True])
    assert p.engine is not None
    for d in range(devices):
        p.engine.ingest(poll(f"d{d}", 125, T0))
    await p.round(T0 + 1)
    sizes = [len(b) for b in buf.batches]
    assert sizes == [per_commit, per_commit]  # messages of 125 values
    assert sum(sizes) == devices


async def test_replacing_the_engine_publishes_what_the_old_one_held() -> None:
    """Reload: pending values of the old engine are committed; the new one starts empty."""
    p, buf = pump(1, 3, [True])
    old = p.engine
    assert old is not None
    old.ingest(poll("d0", 3, T0))
    await p.replace(TelemetryEngine({}, publish_interval_s=1.0))
    assert old.pending_values == 0
    (message,) = data(buf)
    assert message["samples"] == [[0, {"t0": 0, "t1": 1, "t2": 2}]]
    assert p.engine is not old
