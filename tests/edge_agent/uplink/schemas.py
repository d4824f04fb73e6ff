"""Helpers: validate published messages against the JSON Schemas in ``schemas/``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas"
BASE = "https://edge-agent.invalid/schemas/"


@cache
def _registry() -> Registry:
    resources = []
    for path in SCHEMA_DIR.glob("*.schema.json"):
        doc = json.loads(path.read_text())
        resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


def validate(message: dict[str, Any]) -> None:
    """Validate one decoded message against the schema of its ``kind`` (raises on failure)."""
    kind = message.get("kind")
    schema = json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(
        schema, registry=_registry(), format_checker=jsonschema.FormatChecker()
    )
    validator.validate(message)
