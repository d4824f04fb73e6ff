"""Reading what the agent published: envelopes of one kind, by seq, and their time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.plugins.broker import Received


def envelopes(messages: list[Received], kind: str) -> dict[int, dict[str, Any]]:
    """Distinct messages of one kind at the subscriber, by seq (QoS 1 may repeat one)."""
    out: dict[int, dict[str, Any]] = {}
    for m in messages:
        if not m.payload.startswith(b"{"):
            continue
        doc = m.json()
        if doc.get("kind") == kind:
            out[int(doc["seq"])] = doc
    return out


def envelope_time(doc: dict[str, Any]) -> float:
    """The envelope's ``ts`` (when the row was stored) as UNIX seconds."""
    return datetime.fromisoformat(str(doc["ts"]).replace("Z", "+00:00")).timestamp()
