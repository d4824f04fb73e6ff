"""``edge-agent report --bundle`` from ``edge-agent export --format jsonl`` files."""

from __future__ import annotations

from pathlib import Path

from edge_agent.cli import main
from tests.edge_agent.report.support import INTERVALS, make_buffer

SPAN = ["--from", "2026-12-04T12:00:00Z", "--to", "2026-12-04T13:00:00Z"]
# Summaries are exported by creation time: the hour's final record is made after it ends.
LATER = ["--from", "2026-12-04T12:00:00Z", "--to", "2026-12-04T13:05:00Z"]


def test_report_from_export_files_shows_the_same_figures(tmp_path: Path) -> None:
    db = make_buffer(tmp_path / "buffer.db")
    files = []
    for kind in ("summaries", "intervals", "events"):
        out = tmp_path / f"{kind}.jsonl"
        span = LATER if kind == "summaries" else SPAN
        assert main(["export", "--db", str(db), *span, "--kind", kind, "--format", "jsonl",
                     "-o", str(out)]) == 0  # fmt: skip
        files += ["--bundle", str(out)]
    page_file = tmp_path / "report.html"
    assert main(["report", *files, "-o", str(page_file)]) == 0
    page = page_file.read_text(encoding="utf-8")
    assert 'data-field="availability" data-value="0.7">70 %<' in page
    assert 'data-field="mtbf_s" data-value="1050.0" title="17 min 30 s">1,050 s<' in page
    assert page.count('class="stop-row"') == sum(1 for i in INTERVALS if i[2] == "stopped")
    assert page.count('data-category="breakdown"') == 2
    assert 'data-code="42"' in page
    # Export files carry no signature: the page says there was nothing to check.
    assert "no signed records in the input" in page
    # The range defaults to what the records cover.
    assert "2026-12-04 12:00:00 UTC" in page
