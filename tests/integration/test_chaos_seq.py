"""Chaos: sequence numbers are never reused after a killed publisher's database is damaged.

A real publisher process (``python -m tests.tools.soak``: the agent's Buffer
and Uplink, nothing mocked) is SIGKILLed, its database damaged the way the
acceptance harness damaged it, and started again. Whatever happened, no
``(epoch, seq)`` may carry messages of two different runs (a consumer
de-duplicating on it would drop new data), and the loss is announced once by a
``gap`` message, validated against its schema as the running uplink emitted it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.buffer.sequence import LedgerRecord, ledger_path, read_ledger
from tests.edge_agent.uplink.schemas import validate
from tests.plugins.broker import MosquittoFactory, MqttCollector, Received, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def start_publisher(
    db: Path, port: int, count: int, timeout_s: float = 60
) -> subprocess.Popen[str]:
    """The soak publisher producing until ``count`` seqs exist; waits for its ``ready`` line."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.tools.soak",
            "--db",
            str(db),
            "--port",
            str(port),
            "--count",
            str(count),
            "--rate",
            "2000",
            "--timeout",
            str(timeout_s),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def high_water(db: Path, *, main_file_only: bool = False) -> int:
    """The outbox counter as a reader sees it (optionally ignoring the write-ahead log)."""
    uri = f"file:{db}?mode=ro" + ("&immutable=1" if main_file_only else "")
    con = sqlite3.connect(uri, uri=True)
    try:
        row = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        con.close()
    return int(row[0]) if row else 0


def kill_when(proc: subprocess.Popen[str], db: Path, seq: int, timeout_s: float = 30) -> None:
    """SIGKILL the publisher as soon as its outbox has handed out ``seq``."""
    deadline = time.monotonic() + timeout_s
    while high_water(db) < seq:
        assert time.monotonic() < deadline, "publisher did not produce in time"
        assert proc.poll() is None, "publisher exited early"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def ledger(db: Path) -> LedgerRecord:
    record = read_ledger(ledger_path(db))
    assert record is not None
    return record


def decoded(messages: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in messages]


def assert_no_seq_reused(messages: list[dict[str, Any]]) -> None:
    """Every (agent, epoch, seq) carries messages of one producing run only."""
    runs: dict[tuple[str, str, int], set[int]] = {}
    for msg in messages:
        if msg["kind"] == "stop":
            key = (msg["agent"], msg["epoch"], msg["seq"])
            runs.setdefault(key, set()).add(msg["data"]["pid"])
    reused = {key: pids for key, pids in runs.items() if len(pids) > 1}
    assert not reused, f"seq handed out twice: {sorted(reused)[:5]}"


def test_garbage_wal_after_sigkill_is_reported_and_no_seq_is_reused(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """A WAL overwritten with garbage loses its commits: counted, reported, numbers skipped."""
    broker = mosquitto_factory()
    db = tmp_path / "soak.db"
    with MqttCollector(broker.host, broker.port, "edge/lab/soak/#") as coll:
        target = 460
        for _attempt in range(3):  # bounded: a checkpoint may just have emptied the WAL
            kill_when(start_publisher(db, broker.port, count=target + 200), db, target)
            main_hw, wal_hw = high_water(db, main_file_only=True), high_water(db)
            if wal_hw > main_hw:
                break
            target = wal_hw + 300
        assert wal_hw > main_hw, "the WAL held no commits at any kill"
        before = ledger(db)
        assert wal_hw - 1 <= before.high_water <= wal_hw  # exact but for the last commit
        wal = db.with_name(db.name + "-wal")
        wal.write_bytes(os.urandom(wal.stat().st_size))

        final = start_publisher(db, broker.port, count=before.reserved + 20)
        assert final.wait(timeout=60) == 0
        assert coll.wait_for(lambda ms: any(m.topic.endswith("/gap") for m in ms), 20)
        messages = decoded(coll.snapshot())
    assert_no_seq_reused(messages)
    (gap,) = [m for m in messages if m["kind"] == "gap"]
    validate(gap)
    data = gap["data"]
    assert data["reason"] == "database_rolled_back"
    assert "write-ahead log" in data["detail"]
    assert (data["seq_from"], data["seq_to"]) == (main_hw + 1, before.reserved)
    assert data["lost_messages"] == before.high_water - main_hw
    assert data["epoch_restarted"] is False
    epochs = {m["epoch"] for m in messages}
    assert epochs == {gap["epoch"]}  # same numbering, continued above the lost range
    new = [m["seq"] for m in messages if m["kind"] == "stop" and m["seq"] > data["seq_to"]]
    assert len(new) >= 19  # plus the gap message itself
    for m in messages:
        if m["kind"] == "status":
            validate(m)


def test_corrupt_database_after_sigkill_keeps_epoch_and_numbering(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """A database that is no database any more after a kill: moved aside, numbering goes on."""
    db = tmp_path / "soak.db"
    # First run without a broker: every message stays unacknowledged in the outbox.
    kill_when(start_publisher(db, free_port(), count=300), db, 250)
    before = ledger(db)
    # The file pair lost to a card's bad blocks: the main file garbage, the log gone.
    db.write_bytes(b"not a database any more" * (db.stat().st_size // 23 + 1))
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    broker = mosquitto_factory()
    with MqttCollector(broker.host, broker.port, "edge/lab/soak/#") as coll:
        final = start_publisher(db, broker.port, count=before.reserved + 10)
        assert final.wait(timeout=60) == 0
        assert coll.wait_for(lambda ms: any(m.topic.endswith("/gap") for m in ms), 20)
        messages = decoded(coll.snapshot())
    assert list(tmp_path.glob("soak.db.corrupt-*"))
    (gap,) = [m for m in messages if m["kind"] == "gap"]
    validate(gap)
    data = gap["data"]
    assert data["reason"] == "database_corrupt"
    assert data["moved_to"] is not None
    assert data["seq_to"] == before.reserved
    assert gap["epoch"] == before.epoch
    stops = [m["seq"] for m in messages if m["kind"] == "stop"]
    assert stops
    assert min(stops) > before.reserved  # nothing below the old numbering is handed out again
