"""docs/operations.md stays true to the files it quotes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "operations.md"


def _config_sample() -> str:
    text = DOC.read_text()
    section = text[text.index("## Configuration") :]
    match = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert match, "no TOML sample in the Configuration section"
    return match.group(1)


def test_config_sample_is_verbatim_from_the_example() -> None:
    """Each table quoted under Configuration appears verbatim in config/agent.example.toml."""
    example = (ROOT / "config" / "agent.example.toml").read_text()
    chunks = [c.strip("\n") for c in re.split(r"\n\s*\n", _config_sample()) if c.strip()]
    assert len(chunks) >= 2
    for chunk in chunks:
        assert chunk in example, chunk


def test_unit_directives_quoted_in_docs_exist() -> None:
    """Directive values the docs state (watchdog, restart delay, stop timeout) match the unit."""
    unit = (ROOT / "systemd" / "edge-agent.service").read_text()
    doc = DOC.read_text()
    for directive in (
        "WatchdogSec=30",
        "StartLimitIntervalSec=0",
        "TimeoutStopSec=30",
        "MemoryMax=300M",
    ):
        assert directive.split("=")[0] in doc
        assert f"\n{directive}\n" in unit
    assert "after 10 s" in doc
    assert "\nRestartSec=10\n" in unit


def test_status_screen_in_docs_is_what_status_prints() -> None:
    """The example screen under 'Checking on it' is render() of the test fixture, verbatim."""
    import json

    from edge_agent.status_view import render

    snapshot = json.loads((ROOT / "tests" / "cases" / "status" / "status.json").read_text())
    snapshot["buffer"]["max_bytes"] = 512 * 1024 * 1024
    snapshot["machines"]["press1"]["today"]["performance"] = 1.024
    snapshot["machines"]["press1"]["today"]["flags"] = ["performance_capped"]
    text = DOC.read_text()
    section = text[text.index("<!-- status-screen") :]
    match = re.search(r"```text\n(.*?)```", section, re.DOTALL)
    assert match
    assert match.group(1) == render(snapshot, now=snapshot["written_at"] + 1.0)
