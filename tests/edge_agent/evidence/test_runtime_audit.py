"""The running agent: a signed config record at start and at each applied reload."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from edge_agent.config import load_config
from edge_agent.evidence.keys import KeyStore
from edge_agent.evidence.verify import Entry, Evidence, Trust, verify
from edge_agent.runtime import Runtime

from ..uplink.schemas import validate

CONFIG = """
[agent]
id = "gw-audit"
site = "lab"
state_dir = "{state}"

[mqtt]
host = "127.0.0.1"
port = 9

[devices.a]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:1"
unit_id = 1
addressing = "zero"

[devices.a.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.a.tags.good]
table = "holding"
address = 10
type = "uint32"

[machines.m]
run = "a.running"
good = "a.good"
total = "a.good"

[machines.m.kpi]
ideal_cycle_time_s = 2.0
micro_stop_threshold_s = {threshold}
"""


async def test_start_and_reload_are_signed_config_records(tmp_path: Path) -> None:
    """A changed micro-stop threshold shows as a second config record with another hash."""
    state = tmp_path / "state"
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG.format(state=state, threshold=120.0))
    rt = Runtime(load_config(path), install_signals=False)
    task = asyncio.create_task(rt.run())
    for _ in range(200):
        if rt.buffer.is_open and rt.staging.published.get("config"):
            break
        await asyncio.sleep(0.02)
    path.write_text(CONFIG.format(state=state, threshold=30.0))
    assert await rt.reload()
    rt.request_stop()
    assert await asyncio.wait_for(task, 30) == 0
    con = sqlite3.connect(state / "buffer.db")
    envelopes = [
        json.loads(r[0]) for r in con.execute("SELECT envelope FROM evidence ORDER BY seq")
    ]
    con.close()
    audits = [e for e in envelopes if e["kind"] == "config"]
    assert [a["data"]["event"] for a in audits] == ["start", "reload"]
    hashes = [a["data"]["machines"]["m"]["profile_hash"] for a in audits]
    assert hashes[0] != hashes[1]
    assert audits[1]["data"]["machines"]["m"]["profile"]["micro_stop_threshold_s"] == 30.0
    for doc in audits:
        validate(doc)
    key = KeyStore(state).active()
    assert key is not None
    entries = [Entry(f"evidence row {i}", e) for i, e in enumerate(envelopes)]
    report = verify(Evidence(source="db", entries=entries), Trust(keys=[key.public.raw]))
    assert report.ok, [f.message for f in report.problems]
    assert envelopes[0]["kind"] == "key"  # the chain starts before the first record
