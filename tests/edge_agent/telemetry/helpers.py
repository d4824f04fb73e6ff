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


def sample_quality(snapshot: list[Any], tag: str) -> str:
    """Quality of ``tag`` in one snapshot (``good`` when it has no issue entry)."""
    issue = snapshot[2].get(tag) if len(snapshot) > 2 else None
    if issue is None:
        return "good"
    return issue if isinstance(issue, str) else str(issue[0])


def samples_of(data: list[dict[str, Any]], tag: str) -> list[tuple[float, Any, str]]:
    """Decode (ts, value, quality) of one tag's samples across messages."""
    out = []
    for d in data:
        for snapshot in d.get("samples", []):
            if tag in snapshot[1]:
                ts = d["t0"] + snapshot[0] / 1000.0
                out.append((ts, snapshot[1][tag], sample_quality(snapshot, tag)))
    return out


def tags_of(data: dict[str, Any]) -> list[str]:
    """Tags with samples in one message, in order of first appearance."""
    return list(dict.fromkeys(tag for snapshot in data.get("samples", []) for tag in snapshot[1]))


def windows_of(data: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """All aggregate windows of one tag across messages."""
    return [w for d in data for w in d.get("aggregates", {}).get(tag, [])]
