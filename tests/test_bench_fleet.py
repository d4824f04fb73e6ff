"""The fleet benchmark's replay stream: a gateway's cadence, numbered 1..n per gateway."""

from __future__ import annotations

import json
from collections import Counter

from benchmarks import bench_fleet
from tests.edge_agent.collect.samples import message


def test_stream_follows_the_default_cadence_and_numbers_each_gateway(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Per gateway and 300 s: 300 telemetry, 5x(3 KPI + 1 health), 1 stop; seq 1..n, valid."""
    monkeypatch.setattr(bench_fleet, "AGENTS", 3)
    monkeypatch.setattr(bench_fleet, "SECONDS", 300)
    recorded = [
        message(k, i + 1, agent="rec")
        for i, k in enumerate(["telemetry", "kpi", "kpi", "kpi", "health", "stop", "telemetry"])
    ]
    stream = bench_fleet.build_stream(recorded)
    docs = [json.loads(p) for _, p in stream]
    per_agent = Counter(d["agent"] for d in docs)
    assert per_agent == {"sim-00000": 321, "sim-00001": 321, "sim-00002": 321}
    assert Counter(d["kind"] for d in docs) == {
        "telemetry": 900,
        "kpi": 45,
        "health": 15,
        "stop": 3,
    }
    for agent in per_agent:
        assert [d["seq"] for d in docs if d["agent"] == agent] == list(range(1, 322))
    assert all(
        t.startswith(f"edge/fleet/{d['agent']}/") for (t, _), d in zip(stream, docs, strict=True)
    )
