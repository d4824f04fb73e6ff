"""Recorded traffic of a real agent run with a contract, for the collector's tests.

``data/contract_agent_capture.jsonl`` is what the agent published in the run of
``tests/integration/test_collector_contracts.py`` (simulator → agent process →
Mosquitto, saved by a plain subscriber as topic + payload): a key record, a config audit,
KPI records, stop events, contract statuses, alerts and the closed period record, all
signed by the agent's device key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from edge_agent.collect import store
from edge_agent.collect.schemas import load_schemas

CAPTURE = Path(__file__).with_name("data") / "contract_agent_capture.jsonl"
AGENT = "contract-gw"
# The device key fingerprint as the contract annex states it (`edge-agent key show`).
ANNEX = "af359845a0ea1401f25866cd00fe413e97716c102bceea6678d5bd5145033311"
SCHEMAS = load_schemas()


def recorded() -> list[tuple[str, bytes]]:
    """(topic, payload) of every message, in the order received."""
    out = []
    for line in CAPTURE.read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        out.append((doc["topic"], doc["payload"].encode()))
    return out


def envelopes(kind: str) -> list[dict[str, Any]]:
    """The envelopes of one kind."""
    docs = [json.loads(p) for _t, p in recorded()]
    return [d for d in docs if d["kind"] == kind]


def write(dsn: str, batch: Sequence[tuple[str, bytes]]) -> store.BatchResult:
    """Store one batch as the collector does (one transaction)."""
    items = [store.prepare(t, p, SCHEMAS) for t, p in batch]
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        return store.write(conn, items)


def replay(dsn: str, size: int = 7) -> None:
    """Store the whole recording in batches of ``size``."""
    messages = recorded()
    for i in range(0, len(messages), size):
        write(dsn, messages[i : i + size])
