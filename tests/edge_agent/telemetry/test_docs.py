"""The samples in docs/telemetry.md: the config loads as described, the payload validates."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from edge_agent.config import load_config
from edge_agent.telemetry import PublishMode, PublishPolicy

DOC = Path(__file__).resolve().parents[3] / "docs" / "telemetry.md"


def doc_sample() -> str:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 1
    return blocks[0]


def test_doc_sample_loads_with_documented_policies(tmp_path: Path) -> None:
    """The sample passes the real config loader and yields the commented policies."""
    header = f'[agent]\nid = "doc"\nsite = "test"\nstate_dir = "{tmp_path}"\n\n'
    path = tmp_path / "agent.toml"
    path.write_text(header + doc_sample(), encoding="utf-8")
    config = load_config(path)
    change = PublishPolicy(mode=PublishMode.CHANGE, deadband=0.5, heartbeat_s=300.0)
    assert config.publish == {
        ("press1", "oil_temp"): change,
        ("press1", "hydraulic_pressure"): PublishPolicy(
            mode=PublishMode.CHANGE, deadband_percent=2.0, heartbeat_s=300.0
        ),
        ("press1", "vibration_rms"): PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=60.0),
        ("press1", "alarm_word"): PublishPolicy(mode=PublishMode.EVERY),
    }
    assert config.telemetry.interval_s == 1.0


def test_doc_payload_example_is_valid_data(telemetry_validator: Any) -> None:
    """The documented data part validates against the schema (format and docs agree)."""
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks
    for block in blocks:
        data = json.loads(block)
        telemetry_validator.validate(data)
        assert data["samples"]
