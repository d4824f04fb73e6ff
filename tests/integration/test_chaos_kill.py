"""Chaos (b): the publisher process is SIGKILLed at random moments and restarted.

The subscriber must end up with every seq from 1 to N (no gap); duplicates are
allowed only because QoS 1 is at-least-once. The short variant kills 5 times,
the soak variant 20 times.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.edge_agent.uplink.harness import seen_all
from tests.plugins.broker import Mosquitto, MosquittoFactory, MqttCollector

ROOT = Path(__file__).resolve().parents[2]


def start_publisher(db: Path, broker: Mosquitto, count: int, rate: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.tools.soak",
            "--db",
            str(db),
            "--port",
            str(broker.port),
            "--count",
            str(count),
            "--rate",
            str(rate),
            "--timeout",
            "60",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # bounded by the process: it prints "ready" or exits
    assert line.strip() == "ready", f"publisher did not start: {line!r}"
    return proc


def run_kills(tmp_path: Path, broker: Mosquitto, kills: int, count: int, seed: int) -> None:
    rng = random.Random(seed)
    db = tmp_path / "soak.db"
    with MqttCollector(
        broker.host, broker.port, "edge/lab/soak/#", client_id="chaos-sub", clean=False
    ) as coll:
        for _ in range(kills):
            proc = start_publisher(db, broker, count, rate=300)
            time.sleep(rng.uniform(0.05, 0.6))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        proc = start_publisher(db, broker, count, rate=300)
        assert proc.wait(timeout=90) == 0, "final publisher run did not drain the outbox"

        assert coll.wait_for(seen_all(set(range(1, count + 1))), 30)
        messages = coll.snapshot()
    data = [json.loads(m.payload) for m in messages if m.topic.endswith("/stop")]
    seqs = [d["seq"] for d in data]
    assert set(seqs) == set(range(1, count + 1)), "gap in seq at the subscriber"
    # Every seq carries the same payload on every delivery (re-sends are byte-identical).
    by_seq: dict[int, set[str]] = {}
    for m in messages:
        body = json.loads(m.payload)
        if "seq" in body:
            by_seq.setdefault(body["seq"], set()).add(m.payload.decode())
    assert all(len(v) == 1 for v in by_seq.values())
    # n (what the producer meant to send) matches seq: nothing was produced twice or skipped.
    assert all(d["data"]["n"] == d["seq"] for d in data)
    duplicates = sum(n - 1 for n in Counter(seqs).values())
    # QoS 1 duplicates only come from in-flight windows at kill time (max_in_flight each).
    assert duplicates <= (kills + 1) * 100
    # The last will of a killed publisher is followed by a clean 'offline' from the final run.
    statuses = [
        json.loads(m.payload)["data"]["state"] for m in messages if m.topic.endswith("/status")
    ]
    assert statuses[-1] == "offline"
    assert "online" in statuses


@pytest.mark.integration
def test_sigkill_publisher_five_times_no_gap(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """Five SIGKILLs while publishing: the subscriber still sees every seq 1..N."""
    run_kills(tmp_path, mosquitto_factory(persistence=True), kills=5, count=600, seed=7)


@pytest.mark.integration
@pytest.mark.soak
@pytest.mark.timeout(600)
def test_sigkill_publisher_twenty_times_no_gap(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """Twenty SIGKILLs while publishing: the subscriber still sees every seq 1..N."""
    run_kills(tmp_path, mosquitto_factory(persistence=True), kills=20, count=3000, seed=11)
