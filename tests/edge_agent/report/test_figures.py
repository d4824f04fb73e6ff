"""The report's figures: the records' numbers shown unchanged, timeline, Pareto, waterfall."""

from __future__ import annotations

import random
from pathlib import Path

from edge_agent.report import figures
from edge_agent.report.html import render
from edge_agent.report.load import from_buffer
from edge_agent.report.records import latest_records
from tests.edge_agent.report.support import RECORD, T0, make_buffer


def _read_back(text: str) -> float:
    number = text.replace(",", "").split()[0]
    return float(number) / 100 if text.endswith("%") else float(number)


def test_ratios_and_seconds_read_back_as_the_published_number() -> None:
    rng = random.Random(17)
    for _ in range(2000):
        ratio = round(rng.random(), 6)
        assert abs(_read_back(figures.fmt_ratio(ratio)) - ratio) < 5e-10
        seconds = round(rng.uniform(0, 3e6), 3)
        assert _read_back(figures.fmt_seconds(seconds)) == seconds
    assert figures.fmt_ratio(0.980247) == "98.0247 %"
    assert figures.fmt_seconds(1800.0) == "1,800 s"
    assert figures.fmt_seconds(3.9645) == "3.9645 s"
    assert figures.fmt_ratio(None) == figures.NONE


def test_headline_is_the_widest_window_inside_else_the_narrowest_around() -> None:
    day = {"name": "day:d", "start": "2026-12-04T00:00:00Z", "end": "2026-12-05T00:00:00Z"}
    hour = {"name": "hour:h", "start": "2026-12-04T12:00:00Z", "end": "2026-12-04T13:00:00Z"}
    month = {"name": "month:m", "start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}
    records = [day, hour, month]
    whole_day = (T0 - 12 * 3600, T0 + 12 * 3600)
    assert figures.headline(records, *whole_day)["name"] == "day:d"
    assert figures.headline(records, T0 + 60, T0 + 120)["name"] == "hour:h"


def test_latest_record_wins_by_revision_then_final() -> None:
    so_far = {**RECORD, "final": False, "availability": 0.5}
    revised = {**RECORD, "revision": 1, "availability": 0.75}
    assert latest_records([revised, RECORD, so_far])[0]["availability"] == 0.75
    assert latest_records([so_far, RECORD])[0]["final"] is True


def test_timeline_pareto_waterfall_and_stops_from_a_buffer(tmp_path: Path) -> None:
    db = make_buffer(tmp_path / "buffer.db")
    data = from_buffer(db, start=T0, end=T0 + 3600, state_dir=tmp_path)
    m = data.machines["press1"]
    m.fault_names = {17: "Motor overload"}
    m.profile = {"sla": {"customer_fault_codes": [[40, 49]]}}
    segments = figures.timeline(m, data.start, data.end, now=T0 + 3600)
    kinds = [(s.category, round(s.end - s.start)) for s in segments]
    assert kinds == [
        ("unknown", 600),
        ("running", 400),
        ("micro-stop", 100),
        ("breakdown", 500),
        ("running", 400),
        ("breakdown", 200),
        ("idle", 200),
        ("running", 1200),
    ]
    assert segments[3].label == "breakdown: 17 Motor overload"
    rows = figures.pareto(m, m.records[0])
    assert [(r.code, r.seconds, r.count, r.attribution) for r in rows] == [
        (17, 500.0, 1, "provider"),
        (0, 200.0, 1, "not attributed"),
        (42, 200.0, 1, "customer"),
    ]
    assert rows[-1].cumulative == 1.0
    steps = {s.label: s.seconds for s in figures.waterfall(m.records[0])}
    assert steps["planned time"] == RECORD["planned_time_s"]
    assert steps["operating time"] == RECORD["operating_time_s"]
    assert steps["availability loss: stops"] == 900.0
    assert abs(steps["fully productive time"] - 2100 * 0.952381 * 0.95) < 1e-9
    stops = figures.stop_rows(m)
    assert [s.acknowledged_after_s for s in stops] == [
        None,
        100.0,
        None,
        None,
    ]  # 12:18:20 -> 12:20:00
    # No evidence table rows in range: the page says so instead of a verdict.
    assert data.verification is not None
    assert data.verification.ok is None
    page = render(data)
    assert 'data-field="availability" data-value="0.7">70 %<' in page
    assert "<script" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_long_ranges_draw_one_timeline_row_per_day() -> None:
    from edge_agent.report import svg

    day = 86_400.0
    segments = [
        figures.Segment(T0, T0 + 1.5 * day, figures.RUNNING, "running"),
        figures.Segment(T0 + 1.5 * day, T0 + 3 * day, figures.BREAKDOWN, "breakdown: 17", 17),
    ]
    short = svg.timeline(segments[:1], T0, T0 + day, "m")
    assert "days" not in short
    assert short.count('class="seg"') == 1
    long = svg.timeline(segments, T0, T0 + 3 * day, "m")
    assert 'class="chart timeline days"' in long
    assert [d in long for d in ("2026-12-04", "2026-12-05", "2026-12-06")] == [True] * 3
    # Each segment is cut at the day rows: running 1.5 days, breakdown 1.5 days -> 4 pieces.
    assert long.count('data-category="running"') == 2
    assert long.count('data-category="breakdown"') == 2
