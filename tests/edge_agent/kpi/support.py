"""Helpers for the KPI tests: vector files, TOML profiles and record comparison."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
# A verbatim copy of shared/reference/kpi-vectors-public.json (V01, V02, V04, V07, V14).
PUBLIC = ROOT / "tests" / "cases" / "kpi" / "vectors-public.json"
OWN = ROOT / "tests" / "cases" / "kpi" / "vectors-own.json"
TOL = 1e-6


def load_vectors() -> list[dict[str, Any]]:
    """Every vector: the public file and our own edge-case file."""
    out: list[dict[str, Any]] = []
    for path in (PUBLIC, OWN):
        out.extend(json.loads(path.read_text(encoding="utf-8"))["vectors"])
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(value)


def profile_toml(config: dict[str, Any]) -> str:
    """A replay PROFILE.toml text with the vector config keys at top level."""
    lines: list[str] = []
    tables: list[str] = []
    for key, value in config.items():
        if isinstance(value, dict):
            tables.append(f"[{key}]")
            tables.extend(f"{k} = {_toml_value(v)}" for k, v in value.items())
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                tables.append(f"[[{key}]]")
                tables.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines + tables) + "\n"


def mismatches(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Differences between an expected record and a produced one (flags: superset)."""
    problems: list[str] = []
    for key, want in expected.items():
        have = got.get(key, "<missing>")
        if key == "flags":
            ok = set(want) <= set(have)
        elif key == "downtime_by_code":
            ok = set(want) == set(have) and all(abs(want[c] - have[c]) <= TOL for c in want)
        elif want is None or have is None:
            ok = want is have
        else:
            ok = isinstance(have, int | float) and abs(want - have) <= TOL
        if not ok:
            problems.append(f"{key}: expected {want!r}, got {have!r}")
    return problems


def window_bounds(window: dict[str, Any]) -> str:
    """``START/END`` of a vector window: UTC fields, or ``*_local`` wall times (no offset)."""
    if "start" in window:
        return f"{window['start']}/{window['end']}"
    return f"{window['start_local']}/{window['end_local']}"
