"""The runtime's hooks: the chain attached from the agent config, the config audit record."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer
from edge_agent.config import load_config
from edge_agent.evidence.agent import attach, config_audit
from edge_agent.uplink.payload import envelope
from edge_agent.uplink.topics import TopicTemplates

from ..uplink.schemas import validate

ROOT = Path(__file__).resolve().parents[3]


async def test_attach_and_audit_from_the_demo_config(tmp_path: Path) -> None:
    """The demo config's machines end up in a signed config record on {prefix}/config."""
    config = load_config(ROOT / "config" / "demo.toml")
    config = dataclasses.replace(
        config,
        agent=dataclasses.replace(config.agent, state_dir=tmp_path),
        storage=dataclasses.replace(config.storage, path=tmp_path / "buffer.db"),
    )
    topics = TopicTemplates.create(
        site=config.agent.site,
        agent=config.agent.id,
        prefix_template=config.mqtt.topic_prefix,
        templates=config.mqtt.topics,
    )
    buf = Buffer(config.storage, config.agent.id)
    attach(buf, config, topics)
    await buf.open()
    with pytest.raises(RuntimeError, match="before the buffer is opened"):
        attach(buf, config, topics)
    await buf.publish_many([config_audit(config, "start", topics)])
    rows = await buf.fetch_outbox(after=0, limit=10)
    docs = [json.loads(envelope(r, config.agent.id, buf.epoch)) for r in rows]
    await buf.close()
    assert [(r.kind, r.topic) for r in rows] == [
        ("key", topics.key()),
        ("config", topics.config()),
    ]
    for doc in docs:
        validate(doc)
    assert set(docs[1]["data"]["machines"]) == set(config.machines)
    assert (tmp_path / "evidence" / "device.key").is_file()
