"""Inline SVG charts written as text: the state timeline, the downtime Pareto, the waterfall.

Why hand-written SVG and not a charting library: the page must open with no network
(no CDN) and render the same on a laptop, a phone and in print; SVG markup scales
with the page and prints as vectors, needs no JavaScript, and these three charts are
rectangles and text. Python plotting libraries that emit SVG (matplotlib, pygal) would
add a large dependency to a gateway for that. Every shape carries a ``<title>`` (the
tooltip) with the exact figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from edge_agent.report.figures import (
    BREAKDOWN,
    EXCLUDED,
    IDLE,
    MICRO,
    RUNNING,
    UNKNOWN,
    ParetoRow,
    Segment,
    Step,
    fmt_duration,
    fmt_seconds,
    fmt_time,
)

COLORS = {
    RUNNING: "#2e7d32",
    MICRO: "#f9a825",
    IDLE: "#5c7c99",
    BREAKDOWN: "#c62828",
    EXCLUDED: "#9e9e9e",
    UNKNOWN: "#e0e0e0",
}
#: Breakdowns get one shade per fault code (by rank), so the timeline tells faults apart.
FAULT_SHADES = ("#c62828", "#8e24aa", "#d84315", "#ad1457", "#6d4c41", "#4527a0")
PROVIDER_COLOR = "#c62828"
CUSTOMER_COLOR = "#1565c0"
WIDTH = 1000.0


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def fault_color(code: int, codes: Sequence[int]) -> str:
    """The breakdown shade of a fault code among the machine's codes."""
    ranked = sorted(set(codes))
    return (
        FAULT_SHADES[ranked.index(code) % len(FAULT_SHADES)]
        if code in ranked
        else COLORS[BREAKDOWN]
    )


def segment_color(seg: Segment, codes: Sequence[int]) -> str:
    """Fill of a timeline segment."""
    if seg.category == BREAKDOWN:
        return fault_color(seg.fault, codes)
    return COLORS[seg.category]


def timeline(segments: Sequence[Segment], start: float, end: float, machine: str) -> str:
    """A horizontal bar over ``[start, end)``, one rectangle per segment, with time ticks.

    Ranges over :data:`DAY_ROWS_FROM_S` are drawn by :func:`timeline_days` instead.
    """
    if end - start > DAY_ROWS_FROM_S:
        return timeline_days(segments, start, end, machine)
    span = max(end - start, 1e-9)
    codes = [s.fault for s in segments if s.category == BREAKDOWN]
    parts = [
        f'<svg class="chart timeline" data-machine="{escape(machine)}" viewBox="0 0 1000 64" '
        'preserveAspectRatio="none" role="img" xmlns="http://www.w3.org/2000/svg" '
        f'aria-label="state timeline of {escape(machine)}">'
    ]
    for seg in segments:
        x = (seg.start - start) / span * WIDTH
        w = (seg.end - seg.start) / span * WIDTH
        parts.append(_seg_rect(seg, seg.start, seg.end, x, w, 2.0, 36.0, codes))
    ticks = 4
    for i in range(ticks + 1):
        x = i / ticks * WIDTH
        anchor = "start" if i == 0 else "end" if i == ticks else "middle"
        label = fmt_time(start + span * i / ticks).removesuffix(" UTC")
        parts.append(f'<line x1="{_num(x)}" y1="38" x2="{_num(x)}" y2="44" stroke="#555"/>')
        parts.append(
            f'<text x="{_num(x)}" y="58" font-size="11" text-anchor="{anchor}" '
            f'fill="#333">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


#: Ranges longer than this are drawn one row per day (a month in one bar is a blur).
DAY_ROWS_FROM_S = 2 * 86_400.0
DAY_S = 86_400.0


def _seg_rect(seg: Segment, a: float, b: float, x: float, w: float, y: float, h: float,
              codes: Sequence[int]) -> str:  # fmt: skip
    tip = f"{seg.label}: {fmt_time(a)} to {fmt_time(b)} ({fmt_duration(b - a)})"
    return (
        f'<rect class="seg" data-category="{escape(seg.category)}" x="{_num(x)}" y="{_num(y)}" '
        f'width="{_num(max(w, 0.4))}" height="{_num(h)}" fill="{segment_color(seg, codes)}">'
        f"<title>{escape(tip)}</title></rect>"
    )


def timeline_days(segments: Sequence[Segment], start: float, end: float, machine: str) -> str:
    """One row per 24 h from ``start``: time of day across, days down.

    A month of cycles stays readable (midnight UTC rows for a report from a date).
    """
    rows = max(1, int((end - start + DAY_S - 1) // DAY_S))
    codes = [s.fault for s in segments if s.category == BREAKDOWN]
    label_w, row_h, gap, top = 110.0, 14.0, 4.0, 4.0
    bar_w = WIDTH - label_w
    height = top + rows * (row_h + gap) + 22
    parts = [
        f'<svg class="chart timeline days" data-machine="{escape(machine)}" '
        f'viewBox="0 0 1000 {_num(height)}" role="img" xmlns="http://www.w3.org/2000/svg" '
        f'aria-label="state timeline of {escape(machine)}, one row per day">'
    ]
    index = 0
    for row in range(rows):
        r0, r1 = start + row * DAY_S, min(start + (row + 1) * DAY_S, end)
        y = top + row * (row_h + gap)
        parts.append(
            f'<text x="0" y="{_num(y + row_h - 2)}" font-size="12" fill="#333">'
            f"{escape(fmt_time(r0)[:10])}</text>"
        )
        while index < len(segments) and segments[index].end <= r0:
            index += 1
        j = index
        while j < len(segments) and segments[j].start < r1:
            seg = segments[j]
            a, b = max(seg.start, r0), min(seg.end, r1)
            if b > a:
                x = label_w + (a - r0) / DAY_S * bar_w
                parts.append(_seg_rect(seg, a, b, x, (b - a) / DAY_S * bar_w, y, row_h, codes))
            j += 1
    y = top + rows * (row_h + gap) + 14
    for hour in (0, 6, 12, 18, 24):
        x = label_w + hour / 24 * bar_w
        anchor = "start" if hour == 0 else "end" if hour == 24 else "middle"
        parts.append(
            f'<text x="{_num(x)}" y="{_num(y)}" font-size="11" text-anchor="{anchor}" '
            f'fill="#333">+{hour:02d}:00</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def pareto(rows: Sequence[ParetoRow], machine: str) -> str:
    """Horizontal bars per fault code, longest first; the cumulative share on the right."""
    if not rows:
        return ""
    row_h, top = 26.0, 6.0
    label_w, value_w = 300.0, 230.0
    bar_w = WIDTH - label_w - value_w
    longest = max(r.seconds for r in rows) or 1.0
    height = top + row_h * len(rows) + 4
    parts = [
        f'<svg class="chart pareto" data-machine="{escape(machine)}" '
        f'viewBox="0 0 1000 {_num(height)}" role="img" xmlns="http://www.w3.org/2000/svg" '
        f'aria-label="downtime Pareto of {escape(machine)}">'
    ]
    for i, row in enumerate(rows):
        y = top + i * row_h
        w = max(row.seconds / longest * bar_w, 1.0)
        color = {"customer": CUSTOMER_COLOR, "provider": PROVIDER_COLOR}.get(
            row.attribution, COLORS[IDLE]
        )
        tip = (
            f"{row.label}: {fmt_seconds(row.seconds)} in {row.count} stop(s), "
            f"{row.attribution}; cumulative {row.cumulative * 100:.1f} %"
        )
        parts.append(
            f'<text x="{_num(label_w - 8)}" y="{_num(y + 17)}" font-size="14" '
            f'text-anchor="end" fill="#222">{escape(row.label[:40])}</text>'
            f'<rect class="bar" data-code="{row.code}" x="{_num(label_w)}" y="{_num(y + 3)}" '
            f'width="{_num(w)}" height="{_num(row_h - 8)}" fill="{color}">'
            f"<title>{escape(tip)}</title></rect>"
            f'<text x="{_num(label_w + bar_w + 8)}" y="{_num(y + 17)}" font-size="14" '
            f'fill="#222">{escape(fmt_duration(row.seconds))} · {row.count} '
            f"stop{'' if row.count == 1 else 's'} · "
            f"{row.cumulative * 100:.0f} %</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def waterfall(steps: Sequence[Step]) -> str:
    """Vertical bars: levels from zero, each loss floating below the level before it."""
    if not steps:
        return ""
    top = max(s.seconds for s in steps if s.kind == "total") or 1.0
    chart_h, base, gap = 200.0, 210.0, 10.0
    col = WIDTH / len(steps)
    parts = [
        '<svg class="chart waterfall" viewBox="0 0 1000 260" role="img" '
        'xmlns="http://www.w3.org/2000/svg" aria-label="loss waterfall">'
    ]
    level = 0.0
    for i, step in enumerate(steps):
        x = i * col + gap / 2
        h = step.seconds / top * chart_h
        if step.kind == "total":
            y, fill = base - h, "#2e7d32" if i else "#37474f"
            level = step.seconds
        else:
            y, fill = base - level / top * chart_h, "#e57373"
            level -= step.seconds
        tip = f"{step.label}: {fmt_seconds(step.seconds)} ({step.field})"
        parts.append(
            f'<rect class="step" x="{_num(x)}" y="{_num(y)}" width="{_num(col - gap)}" '
            f'height="{_num(max(h, 0.5))}" fill="{fill}"><title>{escape(tip)}</title></rect>'
            f'<text x="{_num(x + (col - gap) / 2)}" y="{_num(base + 18)}" font-size="13" '
            f'text-anchor="middle" fill="#222">{escape(fmt_duration(step.seconds))}</text>'
            f'<text x="{_num(x + (col - gap) / 2)}" y="{_num(base + 36)}" font-size="12" '
            f'text-anchor="middle" fill="#555">{escape(step.label.split(":")[0][:24])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
