"""The gateway benchmark counts what the agent sends (its counter reads the real payload)."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_write_bytes_counts_what_this_process_writes_to_disk(tmp_path: Path) -> None:
    """/proc/<pid>/io write_bytes grows by at least the bytes a process writes and syncs."""
    from benchmarks.bench_gateway import write_bytes

    before = write_bytes(os.getpid())
    data = os.urandom(1 << 20)
    with (tmp_path / "blob").open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    grown = write_bytes(os.getpid()) - before
    if grown == 0 and Path("/proc/mounts").read_text().find(" /tmp tmpfs ") >= 0:
        pytest.skip("tmp_path is on tmpfs: no block-device writes to count")
    assert grown >= len(data)


def test_bench_config_storage_section_reaches_the_agent(tmp_path: Path) -> None:
    """The storage variants of the disk bench are what the agent's config loader reads."""
    from benchmarks.bench_gateway import DISK_VARIANTS, _config
    from edge_agent.config import load_config

    storage = dict(DISK_VARIANTS[-1][1])
    text = _config(1, 2, [5020], 1883, tmp_path / "state", "change", 1.0, "json", storage)
    path = tmp_path / "agent.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.storage.flush_interval_ms == storage["flush_interval_ms"]
    assert config.storage.flush_rows == storage["flush_rows"]
    assert config.storage.outbox_sync.value == storage["outbox_sync"]
