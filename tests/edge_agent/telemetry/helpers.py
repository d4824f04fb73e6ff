"""Helpers shared by the telemetry tests (plain functions, no fixtures)."""

from __future__ import annotations

from typing import Any

from edge_agent.model import Quality, Reading, Value


def rd(
    tag: str,
    value: Value,
    ts: float,
    *,
    device: str = "press1",
    quality: Quality = Quality.GOOD,
    reason: str = "",
) -> Reading:
    """A reading with mono = ts."""
    return Reading(
        device=device, tag=tag, value=value, ts=ts, mono=ts, quality=quality, reason=reason
    )


def samples_of(data: list[dict[str, Any]], tag: str) -> list[tuple[float, Any, str]]:
    """Decode (ts, value, quality) of one tag's samples across messages."""
    out = []
    for d in data:
        for s in d.get("samples", {}).get(tag, []):
            quality = s[2] if len(s) > 2 else "good"
            out.append((d["t0"] + s[0] / 1000.0, s[1], quality))
    return out


def windows_of(data: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """All aggregate windows of one tag across messages."""
    return [w for d in data for w in d.get("aggregates", {}).get(tag, [])]
