"""The records the chain writes, as the buffer emits them, validate against schemas/."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from edge_agent.buffer import Buffer, Outgoing, StorageConfig, SyncMode
from edge_agent.evidence.audit import config_record
from edge_agent.evidence.chain import Chain
from edge_agent.evidence.keys import KeyStore
from edge_agent.kpi import KpiProfile
from edge_agent.uplink.payload import envelope

from ..uplink.schemas import SCHEMA_DIR, _registry, validate


def _envelope_only(doc: dict[str, object]) -> None:
    schema = json.loads((SCHEMA_DIR / "envelope.schema.json").read_text())
    jsonschema.Draft202012Validator(schema, registry=_registry()).validate(doc)


async def _emit(state: Path, *, lose_database: bool, rotate: bool) -> list[dict[str, object]]:
    def buffer() -> Buffer:
        chain = Chain(KeyStore(state), "gw-s", topics={"gap": "e/gap", "key": "e/key"})
        config = StorageConfig(path=state / "buffer.db", outbox_sync=SyncMode.NORMAL)
        return Buffer(config, "gw-s", chain=chain)

    buf = buffer()
    await buf.open()
    toml = state / "agent.toml"
    toml.write_text("[agent]\nid = 'gw-s'\n")
    audit = config_record(
        event="start", config_file=toml, profiles={"press1": KpiProfile(ideal_cycle_time_s=2.0)}
    )
    kpi = {"name": "day:2026-11-01", "machine": "press1", "final": True, "revision": 0}
    await buf.publish_many(
        [
            Outgoing(kind="config", topic="e/config", data=audit, priority=0),
            Outgoing(kind="kpi", topic="e/kpi", data=kpi, priority=0),
            Outgoing(kind="kpi", topic="e/kpi", data={**kpi, "final": False}, priority=0),
        ]
    )
    if rotate:
        KeyStore(state).prepare_rotation()
        await buf.publish_many([Outgoing(kind="kpi", topic="e/kpi", data=kpi, priority=0)])
    rows = await buf.fetch_outbox(after=0, limit=1000)
    out = [json.loads(envelope(r, "gw-s", buf.epoch)) for r in rows]
    await buf.close()
    if lose_database:
        for suffix in ("", "-wal", "-shm"):
            Path(str(state / "buffer.db") + suffix).unlink(missing_ok=True)
        buf = buffer()
        await buf.open()
        rows = await buf.fetch_outbox(after=0, limit=1000)
        out += [json.loads(envelope(r, "gw-s", buf.epoch)) for r in rows]
        await buf.close()
    return out


async def test_chain_records_validate(tmp_path: Path) -> None:
    """Key (chain_start, rotated), config and gap records validate whole; proofs do too."""
    docs = await _emit(tmp_path, lose_database=True, rotate=True)
    kinds = set()
    for doc in docs:
        kind = str(doc["kind"])
        if kind in ("key", "config", "gap"):
            validate(doc)
        else:
            _envelope_only(doc)  # kpi data shapes are issue 13's; the proof is the envelope's
        kinds.add(
            (kind, str(doc["data"].get("event", "")) if isinstance(doc["data"], dict) else "")
        )
    assert {("key", "chain_start"), ("key", "rotated"), ("config", "start"), ("gap", "")} <= kinds


def test_schemas_name_the_new_kinds() -> None:
    """The envelope lists config and key; both have their own schema file."""
    envelope_schema = json.loads((SCHEMA_DIR / "envelope.schema.json").read_text())
    assert {"config", "key"} <= set(envelope_schema["properties"]["kind"]["enum"])
    assert (SCHEMA_DIR / "config.schema.json").is_file()
    assert (SCHEMA_DIR / "key.schema.json").is_file()
