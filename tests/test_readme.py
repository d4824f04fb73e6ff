"""README.md is generated from docs/ and config/; it must not drift from them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _builder():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "build_readme", ROOT / "scripts" / "build_readme.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_up_to_date() -> None:
    """README.md equals what `make readme` builds from docs/ and config/agent.example.toml."""
    assert (ROOT / "README.md").read_text(encoding="utf-8") == _builder().build(), (
        "run `make readme`"
    )


def test_benchmarks_is_up_to_date() -> None:
    """BENCHMARKS.md equals what `make readme` builds from docs/bench-*.md."""
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert text == _builder().build_benchmarks(), "run `make readme`"


def test_quick_start_is_two_commands() -> None:
    """The quick start is exactly `make demo` and `make test`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make demo", "make test"]
