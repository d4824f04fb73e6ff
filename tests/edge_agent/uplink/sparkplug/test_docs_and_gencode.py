"""docs/sparkplug.md's sample loads; the committed generated module is what protoc makes now."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomli

from edge_agent.configkit import Issues, Table
from edge_agent.uplink import parse_mqtt
from edge_agent.uplink.config import PayloadFormat

ROOT = Path(__file__).resolve().parents[4]
DOC = ROOT / "docs" / "sparkplug.md"
PROTO_DIR = ROOT / "edge_agent" / "uplink" / "sparkplug"


def test_doc_sample_parses_and_every_commented_key_is_valid(tmp_path: Path) -> None:
    """The [mqtt] sample of docs/sparkplug.md loads, also with every default uncommented."""
    match = re.search(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert match is not None
    for text in (match.group(1), re.sub(r"(?m)^# ([a-z_]+ =)", r"\1", match.group(1))):
        issues = Issues("docs/sparkplug.md")
        config = parse_mqtt(Table(tomli.loads(text), "", issues).table("mqtt"), base_dir=tmp_path)
        assert [i.message for i in issues.items] == []
        assert config.payload is PayloadFormat.SPARKPLUG_B


def test_generated_module_matches_the_proto(tmp_path: Path) -> None:
    """sparkplug_b_pb2.py/.pyi are protoc's output for the committed Tahu proto (not edited)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            "sparkplug_b.proto",
        ],
        check=True,
        timeout=60,
    )
    for name in ("sparkplug_b_pb2.py", "sparkplug_b_pb2.pyi"):
        assert (tmp_path / name).read_text() == (PROTO_DIR / name).read_text(), name
