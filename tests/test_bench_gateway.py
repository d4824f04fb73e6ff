"""The gateway benchmark counts what the agent sends (its counter reads the real payload)."""

from __future__ import annotations

import pytest

from benchmarks.bench_gateway import count_values
from edge_agent.model import Quality, Reading
from edge_agent.telemetry import PublishMode, PublishPolicy, TelemetryEngine


def test_counter_counts_every_value_of_engine_messages_by_second() -> None:
    """Values of real engine messages are counted once, in the second they were read."""
    every = PublishPolicy(mode=PublishMode.EVERY)
    engine = TelemetryEngine({("d", f"r{i}"): every for i in range(3)}, 5.0)
    for second in range(5):
        ts = 1000.0 + second + 0.02  # polls just after the whole second
        poll = [Reading("d", f"r{i}", i, ts, 0.0) for i in range(3)]
        if second == 2:
            poll[1] = Reading("d", "r1", None, ts, 0.0, Quality.BAD, "timeout")
        engine.ingest(poll)
    (message,) = engine.due(1005.0)
    n, newest, seconds = count_values(message.data)
    assert n == 15
    assert newest == pytest.approx(1004.02)
    assert seconds == {999: 3, 1000: 3, 1001: 3, 1002: 3, 1003: 3}
