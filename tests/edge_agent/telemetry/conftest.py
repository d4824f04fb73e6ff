"""Fixtures for the telemetry tests: schema validation of produced messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from edge_agent.telemetry import TelemetryMessage

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "schemas" / "telemetry.schema.json"


class DataValidator:
    """Validates a ``data`` part inside a minimal envelope against the telemetry schema."""

    def __init__(self) -> None:
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        self._validator = jsonschema.Draft202012Validator(schema)

    def validate(self, data: dict[str, Any]) -> None:
        """Raise ``jsonschema.ValidationError`` unless ``data`` is a valid telemetry data part."""
        envelope = {
            "v": 2,
            "kind": "telemetry",
            "agent": "test",
            "epoch": "0a1b2c3d",
            "seq": 0,
            "ts": 0.0,
            "data": data,
        }
        self._validator.validate(envelope)


@pytest.fixture(scope="session")
def telemetry_validator() -> DataValidator:
    """A validator for the ``data`` part of telemetry messages."""
    return DataValidator()


@pytest.fixture
def check(
    telemetry_validator: DataValidator,
) -> Callable[[list[TelemetryMessage]], list[dict[str, Any]]]:
    """Validate messages against the schema and strict JSON; return their round-tripped data."""

    def _check(messages: list[TelemetryMessage]) -> list[dict[str, Any]]:
        out = []
        for message in messages:
            text = json.dumps(message.data, allow_nan=False)
            data = json.loads(text)
            telemetry_validator.validate(data)
            assert data["device"] == message.device
            out.append(data)
        return out

    return _check
