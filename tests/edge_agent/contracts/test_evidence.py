"""Contracts in the evidence chain: which contract kinds are chained, and the config audit."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import load_config
from edge_agent.contracts import contract_hash
from edge_agent.evidence.agent import config_audit
from edge_agent.evidence.proof import policy
from edge_agent.uplink import TopicTemplates

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "contracts.example.toml"


def test_alerts_and_period_records_are_chained_the_status_only_signed() -> None:
    """Settlement evidence is chained; the status, published every round, is only signed."""
    assert policy("contract_alert", {}) == "chain"
    assert policy("contract_period", {"final": True}) == "chain"
    assert policy("contract", {"final": False}) == "sign"


def test_the_config_audit_names_every_contract_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signed config record carries each contract's definition hash."""
    monkeypatch.setenv("EDGE_MQTT_PASSWORD", "not-a-real-secret")
    config = load_config(EXAMPLE)
    record = config_audit(config, "start", TopicTemplates.create(site="s", agent="a"))
    assert isinstance(record.data, dict)
    assert record.data["contracts"] == {
        name: contract_hash(c) for name, c in config.contracts.items()
    }
    assert set(record.data["contracts"]) == {"line2-service", "press1-oee"}
