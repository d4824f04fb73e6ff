"""The chain inside the outbox: proofs, links across restarts and kill -9, segments, rotation."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.buffer import Buffer, Outgoing, StorageConfig, SyncMode
from edge_agent.evidence import proof
from edge_agent.evidence.chain import Chain, read_head
from edge_agent.evidence.keys import KeyStore
from edge_agent.evidence.verify import Entry, Evidence, Report, Trust, verify
from edge_agent.uplink.payload import envelope

AGENT = "gw-chain"
TOPICS = {"gap": "e/gap", "key": "e/key"}


def _buffer(state: Path) -> Buffer:
    chain = Chain(KeyStore(state), AGENT, topics=TOPICS)
    config = StorageConfig(path=state / "buffer.db", outbox_sync=SyncMode.NORMAL)
    return Buffer(config, AGENT, chain=chain)


def _final(i: int) -> Outgoing:
    data = {"name": f"hour:{i}", "machine": "m1", "final": True, "revision": 0, "oee": 0.5}
    return Outgoing(kind="kpi", topic="e/kpi", data=data, priority=0)


async def _envelopes(buf: Buffer) -> list[bytes]:
    rows = await buf.fetch_outbox(after=0, limit=100_000)
    return [envelope(r, AGENT, buf.epoch) for r in rows]


def _check(lines: list[bytes], trust: Trust) -> Report:
    entries = [Entry(f"line {i + 1}", json.loads(raw)) for i, raw in enumerate(lines)]
    return verify(Evidence(source="test", entries=entries), trust)


def _trust(state: Path) -> Trust:
    return Trust(keys=[k.raw for k in KeyStore(state).public_keys()])


async def test_signed_kinds_carry_a_proof_others_do_not(tmp_path: Path) -> None:
    """Final KPI records and stops are chained, so-far records signed only, telemetry bare."""
    buf = _buffer(tmp_path)
    await buf.open()
    so_far = {"name": "day:1", "machine": "m1", "final": False, "revision": 0}
    await buf.publish_many(
        [
            _final(1),
            Outgoing(kind="kpi", topic="e/kpi", data=so_far, priority=0),
            Outgoing(kind="stop", topic="e/stop", data={"machine": "m1", "start": 1}, priority=0),
            Outgoing(kind="telemetry", topic="e/t", data={"v": 1}, priority=9),
            Outgoing(kind="health", topic="e/h", data={"ok": True}, priority=5),
        ]
    )
    docs = [json.loads(raw) for raw in await _envelopes(buf)]
    await buf.close()
    kinds = [(d["kind"], "prev" in d.get("proof", {}), "proof" in d) for d in docs]
    assert kinds == [
        ("key", True, True),  # the chain's first record: chain_start with the public key
        ("kpi", True, True),
        ("kpi", False, True),
        ("stop", True, True),
        ("telemetry", False, False),
        ("health", False, False),
    ]
    assert docs[0]["data"]["event"] == "chain_start"
    assert docs[0]["proof"]["prev"] is None
    assert docs[1]["proof"]["prev"] == proof.from_envelope(docs[0]).link  # type: ignore[union-attr]
    assert docs[3]["proof"]["prev"] == proof.from_envelope(docs[1]).link  # type: ignore[union-attr]


async def test_resend_is_byte_identical_across_restarts(tmp_path: Path) -> None:
    """The proof is stored with the row: the message is the same bytes after a restart."""
    buf = _buffer(tmp_path)
    await buf.open()
    await buf.publish_many([_final(i) for i in range(3)])
    first = await _envelopes(buf)
    await buf.close()
    buf = _buffer(tmp_path)
    await buf.open()
    assert await _envelopes(buf) == first
    await buf.close()


async def test_chain_continues_across_restarts(tmp_path: Path) -> None:
    """A normal restart continues the chain: no new segment, every link holds."""
    for round_ in range(3):
        buf = _buffer(tmp_path)
        await buf.open()
        await buf.publish_many([_final(round_ * 10 + i) for i in range(4)])
        lines = await _envelopes(buf)
        await buf.close()
    report = _check(lines, _trust(tmp_path))
    assert report.ok, [f.message for f in report.findings]
    starts = [json.loads(x) for x in lines if json.loads(x)["kind"] == "key"]
    assert len(starts) == 1  # one chain_start, at the first start only


async def test_lost_database_starts_a_segment_with_the_gap_record(tmp_path: Path) -> None:
    """Database deleted (ledger kept): the signed gap record starts the next segment."""
    buf = _buffer(tmp_path)
    await buf.open()
    await buf.publish_many([_final(i) for i in range(5)])
    before = await _envelopes(buf)
    await buf.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp_path / "buffer.db") + suffix).unlink(missing_ok=True)
    buf = _buffer(tmp_path)
    await buf.open()
    await buf.publish_many([_final(100)])
    after = await _envelopes(buf)
    await buf.close()
    docs = [json.loads(x) for x in after]
    assert docs[0]["kind"] == "gap"
    assert docs[0]["proof"]["prev"] is None
    assert docs[0]["data"]["reason"] == "database_missing"
    report = _check(before + after, _trust(tmp_path))
    assert report.ok, [f.message for f in report.problems]
    gaps = [f for f in report.findings if f.code == "declared_gap"]
    assert len(gaps) == 1
    assert "database_missing" in gaps[0].message


async def test_silent_restart_is_a_problem(tmp_path: Path) -> None:
    """A segment start that is not a gap or chain_start record is flagged."""
    buf = _buffer(tmp_path)
    await buf.open()
    await buf.publish_many([_final(i) for i in range(3)])
    lines = await _envelopes(buf)
    await buf.close()
    doc = json.loads(lines[-1])  # the last record: nothing after it links to it
    key = KeyStore(tmp_path).active()
    assert key is not None
    from edge_agent.evidence.canonical import canonical, digest

    head = proof.header(
        agent=AGENT,
        epoch=doc["epoch"],
        seq=doc["seq"],
        kind="kpi",
        ts=doc["ts"],
        data_sha256=digest(doc["data"]),
        kid=key.kid,
        prev=None,
    )
    doc["proof"] = {
        "kid": key.kid,
        "prev": None,
        "sig": proof.encode_sig(key.sign(canonical(head))),
    }
    lines[-1] = json.dumps(doc).encode()
    report = _check(lines, _trust(tmp_path))
    assert [f.code for f in report.problems] == ["silent_restart"]


async def test_key_rotation_is_a_signed_record(tmp_path: Path) -> None:
    """Key rotate: the old key signs the rotation, the new key signs what follows."""
    buf = _buffer(tmp_path)
    await buf.open()
    await buf.publish_many([_final(1)])
    store = KeyStore(tmp_path)
    old = store.active()
    new = store.prepare_rotation()
    assert old is not None
    await buf.publish_many([_final(2)])
    await buf.publish_many([_final(3)])  # this transaction promotes the new key
    lines = await _envelopes(buf)
    await buf.close()
    docs = [json.loads(x) for x in lines]
    rotation = next(d for d in docs if d["kind"] == "key" and d["data"]["event"] == "rotated")
    assert rotation["proof"]["kid"] == old.kid
    assert rotation["data"]["key"]["kid"] == new.kid
    assert [d["proof"]["kid"] for d in docs if d["seq"] > rotation["seq"]] == [new.kid, new.kid]
    assert store.active() is not None
    assert store.active().kid == new.kid
    assert not store.pending_path.exists()
    # The customer's annex names the old key only: the rotation record vouches for the new.
    report = _check(lines, Trust(fingerprints={old.public.fingerprint}))
    assert report.ok, [f.message for f in report.problems]
    assert any("key rotated" in c for c in report.chain)


async def test_lost_key_starts_a_segment_the_old_key_cannot_vouch_for(tmp_path: Path) -> None:
    """Device key deleted: a new key and a chain_start; the annex key does not cover it."""
    buf = _buffer(tmp_path)
    await buf.open()
    await buf.publish_many([_final(1)])
    lines = await _envelopes(buf)
    await buf.close()
    store = KeyStore(tmp_path)
    old = store.active()
    assert old is not None
    store.active_path.unlink()
    buf = _buffer(tmp_path)
    await buf.open()
    await buf.publish_many([_final(2)])
    lines = await _envelopes(buf)
    await buf.close()
    docs = [json.loads(x) for x in lines]
    restart = [d for d in docs if d["kind"] == "key"][-1]
    assert restart["data"]["reason"] == "key_replaced"
    assert restart["proof"]["prev"] is None
    report = _check(lines, Trust(fingerprints={old.public.fingerprint}))
    assert {f.code for f in report.problems} == {"untrusted_key"}


async def test_key_files_are_private_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """device.key is 0600 in a 0700 directory; no log line carries key material."""
    caplog.set_level(logging.DEBUG)
    buf = _buffer(tmp_path)
    await buf.open()
    await buf.publish_many([_final(1)])
    await buf.close()
    store = KeyStore(tmp_path)
    assert stat.S_IMODE(store.active_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    pem = store.active_path.read_text()
    body = "".join(pem.splitlines()[1:-1])
    assert body not in caplog.text
    assert "PRIVATE" not in caplog.text
    assert "PRIVATE" not in repr(store.active())


PUBLISHER = """
import asyncio, sys
from pathlib import Path
from edge_agent.buffer import Buffer, Outgoing, StorageConfig
from edge_agent.evidence.chain import Chain
from edge_agent.evidence.keys import KeyStore

async def main():
    state = Path(sys.argv[1])
    chain = Chain(KeyStore(state), "gw-chain", topics={"gap": "e/gap", "key": "e/key"})
    buf = Buffer(StorageConfig(path=state / "buffer.db"), "gw-chain", chain=chain)
    await buf.open()
    i = 0
    while True:
        data = {"name": f"hour:{i}", "machine": "m1", "final": True, "revision": 0}
        await buf.publish_many([Outgoing(kind="kpi", topic="e/kpi", data=data, priority=0)])
        i += 1
        if i == 20:
            print("ready", flush=True)

asyncio.run(main())
"""


async def test_chain_survives_kill_9(tmp_path: Path) -> None:
    """A publisher SIGKILLed mid-stream three times: the chain has no break and no fork."""
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(tmp_path)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[3],
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
            time.sleep(0.2)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    buf = _buffer(tmp_path)
    await buf.open()
    lines = await _envelopes(buf)
    await buf.close()
    report = _check(lines, _trust(tmp_path))
    assert report.ok, [f.message for f in report.problems]
    assert report.counts["chained_records"] >= 60
    assert not [f for f in report.findings if f.code == "declared_gap"]


def test_head_is_stored_in_the_database(tmp_path: Path) -> None:
    """The head lives in the state table of the same database (same transaction)."""
    import asyncio

    async def run() -> Any:
        buf = _buffer(tmp_path)
        await buf.open()
        await buf.publish_many([_final(1)])
        await buf.close()

    asyncio.run(run())
    import sqlite3

    con = sqlite3.connect(tmp_path / "buffer.db")
    head = read_head(con)
    last = con.execute("SELECT max(seq) FROM evidence").fetchone()[0]
    con.close()
    assert head is not None
    assert head.seq == last


async def test_an_older_database_is_migrated_and_the_chain_starts_there(tmp_path: Path) -> None:
    """A buffer of schema 1 with history: migrated, the chain starts with reason chain_enabled."""
    import sqlite3

    from edge_agent.buffer.schema import MIGRATIONS

    con = sqlite3.connect(tmp_path / "buffer.db", isolation_level=None)
    for statement in MIGRATIONS[1]:
        con.execute(statement)
    con.execute("PRAGMA user_version=1")
    con.execute(
        "INSERT INTO outbox(kind, priority, topic, data, created) VALUES ('kpi', 0, 't', '{}', 1)"
    )
    con.execute("DELETE FROM outbox")  # published long ago; the counter remembers it
    con.close()
    buf = _buffer(tmp_path)
    await buf.open()
    await buf.publish_many([_final(1)])
    docs = [json.loads(x) for x in await _envelopes(buf)]
    await buf.close()
    assert docs[0]["kind"] == "key"
    assert docs[0]["data"]["reason"] == "chain_enabled"
    assert docs[0]["seq"] == 2  # numbering continues above the old history
    assert "prev" in docs[1]["proof"]
