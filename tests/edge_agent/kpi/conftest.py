"""Fixtures of the KPI tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .support import profile_toml, window_bounds


@pytest.fixture
def write_case(tmp_path: Path) -> Any:
    """Write a vector's profile and samples to files; return (profile, samples, window args)."""

    def write(vector: dict[str, Any]) -> tuple[Path, Path, list[str]]:
        prof = tmp_path / "profile.toml"
        prof.write_text(profile_toml(vector["config"]), encoding="utf-8")
        samples = tmp_path / "samples.jsonl"
        samples.write_text(
            "".join(json.dumps(s) + "\n" for s in vector["samples"]), encoding="utf-8"
        )
        windows = [f"{w['name']}={window_bounds(w)}" for w in vector["report_windows"]]
        return prof, samples, windows

    return write
