"""Shared helpers for buffer tests (imported explicitly, not a conftest)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge_agent.model import Quality, Reading


def readings(n: int, *, start: float = 1_700_000_000.0, device: str = "plc1") -> list[Reading]:
    """``n`` readings one second apart."""
    return [
        Reading(
            device=device,
            tag=f"t{i % 7}",
            value=float(i),
            ts=start + i,
            mono=float(i),
            quality=Quality.GOOD,
        )
        for i in range(n)
    ]


def count(path: Path, table: str, where: str = "") -> int:
    """Rows in a table, read through a separate read-only connection."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")  # noqa: S608
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()


def stored(path: Path) -> list[tuple[float, str, str, object]]:
    """Every raw value stored (frames, decoded): ``(ts, device, tag, value)`` in arrival order."""
    from edge_agent.buffer import blocks

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [
            (v.ts, v.device, v.tag, v.value)
            for v in blocks.read(con, float("-inf"), float("inf"), order="id")
        ]
    finally:
        con.close()


def values(path: Path) -> int:
    """How many raw values are stored (frames, decoded)."""
    return len(stored(path))
