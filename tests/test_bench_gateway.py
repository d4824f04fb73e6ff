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


def test_sparkplug_counter_counts_every_metric_of_a_real_ddata() -> None:
    """The Sparkplug variant counts DDATA metrics (one per value) by their timestamps."""
    from benchmarks.bench_gateway import count_sparkplug
    from edge_agent.uplink.sparkplug import codec
    from edge_agent.uplink.sparkplug.catalog import DataType, MetricSpec

    payload = codec.Payload(timestamp=1, seq=1)
    spec = MetricSpec("r0", 1, DataType.UINT16)
    for ms in (1_000_020, 1_000_520, 1_001_020):
        codec.add_data_metric(payload, spec, 7, ms, historical=False)
    raw = payload.SerializeToString()
    n, newest, seconds = count_sparkplug("spBv1.0/bench/DDATA/bench-gw/d0", raw)
    assert n == 3
    assert newest == pytest.approx(1001.02)
    assert seconds == {999: 1, 1000: 2}
    assert count_sparkplug("spBv1.0/bench/DBIRTH/bench-gw/d0", raw) == (0, 0.0, {})
