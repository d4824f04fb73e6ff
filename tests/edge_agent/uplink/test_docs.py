"""docs/pipeline.md: its configuration sample is valid and documents every key."""

from __future__ import annotations

import re
from pathlib import Path

import tomli

from edge_agent.buffer import parse_storage
from edge_agent.configkit import Issues, Table
from edge_agent.uplink import parse_mqtt

DOC = Path(__file__).resolve().parents[3] / "docs" / "pipeline.md"


def sample() -> str:
    match = re.search(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert match is not None, "docs/pipeline.md has no toml sample"
    return match.group(1)


def test_sample_parses_without_issues(tmp_path: Path) -> None:
    """The [storage] and [mqtt] sample in the docs loads with no configuration error."""
    data = tomli.loads(sample())
    issues = Issues("docs/pipeline.md")
    root = Table(data, "", issues)
    parse_storage(root.table("storage"), state_dir=tmp_path)
    parse_mqtt(root.table("mqtt"), base_dir=tmp_path)
    assert issues.items == []


def test_sample_with_every_commented_key_enabled_parses(tmp_path: Path) -> None:
    """Uncommenting every '# key = value' line (the defaults) still loads cleanly."""
    lines = []
    for line in sample().splitlines():
        if re.match(r"^# \[?[a-z_.]+\]? ?(=|$)", line) and not line.startswith("# password_file"):
            line = line[2:]
        lines.append(line)
    data = tomli.loads("\n".join(lines))
    issues = Issues("docs/pipeline.md")
    root = Table(data, "", issues)
    storage = parse_storage(root.table("storage"), state_dir=tmp_path)
    mqtt = parse_mqtt(root.table("mqtt"), base_dir=tmp_path)
    assert issues.items == []
    assert storage.max_mb == 512
    assert mqtt.topics["kpi"] == "{prefix}/{machine}/kpi/{window_kind}"
