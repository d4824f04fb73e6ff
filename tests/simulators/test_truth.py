"""Ground-truth files: content and byte-identical reproducibility with a manual clock."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from simulators.clock import ManualClock
from simulators.host import SimulatorHost
from simulators.truth import read_truth


async def _run(path: Path, seed: int) -> bytes:
    async with SimulatorHost(
        "demo", clock=ManualClock(speed=60.0), seed=seed, truth_path=path
    ) as sim:
        for _ in range(240):
            await sim.advance(60.0)
        sim.machine("M1").force_fault(7, 120.0)
        await sim.advance(600.0)
    return path.read_bytes()


async def test_same_seed_gives_byte_identical_truth(tmp_path: Path) -> None:
    """Two runs with the same seed and clock steps write byte-identical truth files."""
    a = await _run(tmp_path / "a.jsonl", seed=3)
    b = await _run(tmp_path / "b.jsonl", seed=3)
    c = await _run(tmp_path / "c.jsonl", seed=4)
    assert a == b
    assert a != c


async def test_truth_content(tmp_path: Path) -> None:
    """The file starts with a header, has contiguous intervals per machine and ends with stop."""
    await _run(tmp_path / "t.jsonl", seed=1)
    recs = read_truth(tmp_path / "t.jsonl")
    assert recs[0]["type"] == "start"
    assert recs[0]["speed"] == 60.0
    assert recs[-1] == {"type": "stop", "t_s": 15000.0}
    for mid in ("M1", "M2", "M3"):
        iv = [r for r in recs if r["type"] == "interval" and r["machine"] == mid]
        assert iv[0]["start_s"] == 0.0
        assert iv[-1]["end_s"] == 15000.0
        for prev, nxt in itertools.pairwise(iv):
            assert prev["end_s"] == nxt["start_s"]
            assert prev["end_ts"] == nxt["start_ts"]
        # Wall time runs at 1/60 of sim time.
        assert iv[-1]["end_ts"] - iv[0]["start_ts"] == pytest.approx(15000.0 / 60.0)
    forced = [r for r in recs if r["type"] == "interval" and r["fault_code"] == 7]
    assert len(forced) == 1
    assert forced[0]["end_s"] - forced[0]["start_s"] == pytest.approx(120.0)
