"""Assemble README.md from docs/readme/*.md, config/agent.example.toml and the component pages.

The component pages in docs/ are the single source (their config samples are tested); the
README embeds them with headings shifted so each page is a second-level section.
Usage: ``python scripts/build_readme.py [--check]``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = [
    "modbus.md",
    "opcua.md",
    "kpi.md",
    "pipeline.md",
    "telemetry.md",
    "simulators.md",
    "operations.md",
]
_FENCE = re.compile(r"^(```|~~~)")
_HEADING = re.compile(r"^(#{1,6}) ")


def _shift_headings(text: str, top: int = 2) -> str:
    lines = text.splitlines()
    in_code = False
    levels = []
    for line in lines:
        if _FENCE.match(line):
            in_code = not in_code
        elif not in_code and (m := _HEADING.match(line)):
            levels.append(len(m.group(1)))
    shift = top - min(levels, default=top)
    out = []
    in_code = False
    for line in lines:
        if _FENCE.match(line):
            in_code = not in_code
        elif not in_code and (m := _HEADING.match(line)):
            line = "#" * min(6, len(m.group(1)) + shift) + line[len(m.group(1)) :]
        out.append(line)
    return "\n".join(out).strip() + "\n"


def build() -> str:
    """The README text."""
    docs = ROOT / "docs"
    parts = [(docs / "readme" / "intro.md").read_text(encoding="utf-8").rstrip() + "\n"]
    example = (ROOT / "config" / "agent.example.toml").read_text(encoding="utf-8")
    parts.append("```toml\n" + example.rstrip() + "\n```\n")
    parts.append((docs / "readme" / "topics.md").read_text(encoding="utf-8"))
    for name in COMPONENTS:
        parts.append(_shift_headings((docs / name).read_text(encoding="utf-8")))
    parts.append(
        "## Benchmarks\n\nMeasured figures, the commands that produced them and the machine are in "
        "[BENCHMARKS.md](BENCHMARKS.md).\n"
    )
    parts.append((docs / "readme" / "development.md").read_text(encoding="utf-8"))
    return "\n".join(p.rstrip() + "\n" for p in parts)


def main(argv: list[str]) -> int:
    """Write README.md, or with --check fail when it is out of date."""
    text = build()
    target = ROOT / "README.md"
    if "--check" in argv:
        if target.read_text(encoding="utf-8") != text:
            print("README.md is out of date: run `make readme`", file=sys.stderr)
            return 1
        return 0
    target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
