"""The report page: one self-contained HTML document (inline CSS and SVG, no script).

Nothing is fetched when it opens: no fonts, images, scripts or styles from elsewhere
(the tests check Chromium makes no request). The layout is one column that reflows
on a phone (tables scroll sideways inside their box) and prints to PDF (each
machine starts a new page; charts are vectors). Every figure taken from a record
carries ``data-field`` / ``data-value`` with the record's exact value, which is what
the tests compare with the buffer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from edge_agent.contracts.text import format_budget, format_value
from edge_agent.report import figures, svg
from edge_agent.report.model import MachineData, ReportData
from edge_agent.report.records import iso_to_s

CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;
margin:0;background:#f4f5f7;overflow-wrap:anywhere}
main{max-width:1100px;margin:0 auto;padding:12px}
header,section.machine,section.contracts{background:#fff;border-radius:6px;padding:12px 16px;
margin:0 0 14px;box-shadow:0 1px 2px rgba(0,0,0,.12)}
h1{font-size:1.45em;margin:.2em 0}h2{font-size:1.25em;margin:.3em 0}
h3{font-size:1.05em;margin:1em 0 .3em}
.meta{color:#444;font-size:.92em}.meta code{word-break:break-all}
.verify{padding:6px 10px;border-radius:4px;margin:8px 0;font-weight:600}
.verify.ok{background:#e8f5e9;color:#1b5e20}.verify.bad{background:#ffebee;color:#b71c1c}
.verify.none{background:#eceff1;color:#37474f}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:8px}
.card{border:1px solid #dde;border-radius:4px;padding:6px 8px}
.card .k{font-size:.8em;color:#555}.card .v{font-size:1.2em;font-weight:600}
.chart{width:100%;height:auto;display:block}
svg.timeline{height:64px}svg.timeline.days{height:auto}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:.88em;margin:4px 0}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{padding:3px 6px;border-bottom:1px solid #e3e3e3;text-align:right;white-space:nowrap}
th:first-child,td:first-child,td.l,th.l{text-align:left}
th{background:#f0f2f5;font-weight:600}
.state-breached,.state-missed{color:#b71c1c;font-weight:600}
.state-at_risk{color:#e65100;font-weight:600}.state-on_track,.state-met{color:#1b5e20}
.note{color:#666;font-size:.85em}
@media (max-width:600px){body{font-size:14px}main{padding:6px}
header,section.machine,section.contracts{padding:8px}}
@media print{body{background:#fff}main{max-width:none;padding:0}
header,section.machine,section.contracts{box-shadow:none;padding:0}
section.machine{break-before:page}.scroll{overflow:visible}
table{font-size:8pt}th,td{white-space:normal}}
"""

KPI_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("planned_time_s", "planned", "s"),
    ("data_coverage", "coverage", "ratio"),
    ("availability", "availability", "ratio"),
    ("performance", "performance", "ratio"),
    ("quality", "quality", "ratio"),
    ("oee", "OEE", "ratio"),
    ("sla_availability", "SLA avail.", "ratio"),
    ("downtime_total_s", "downtime", "s"),
    ("stops", "stops", "count"),
    ("micro_stops", "micro", "count"),
    ("failures", "failures", "count"),
    ("mtbf_s", "MTBF", "s"),
    ("mttr_s", "MTTR", "s"),
    ("total_count", "total", "count"),
    ("good_count", "good", "count"),
)
CARDS: tuple[tuple[str, str, str], ...] = (
    ("availability", "Availability", "ratio"),
    ("performance", "Performance", "ratio"),
    ("quality", "Quality", "ratio"),
    ("oee", "OEE", "ratio"),
    ("mtbf_s", "MTBF", "s"),
    ("mttr_s", "MTTR", "s"),
    ("data_coverage", "Data coverage", "ratio"),
    ("downtime_provider_s", "Downtime provider", "s"),
    ("downtime_customer_s", "Downtime customer", "s"),
)


def _fmt(value: Any, unit: str) -> str:
    if unit == "ratio":
        return figures.fmt_ratio(value)
    if unit == "s":
        return figures.fmt_seconds(value)
    return figures.fmt_count(value)


def _value_attr(value: Any) -> str:
    return escape(json.dumps(value), quote=True)


def _cell(record: Mapping[str, Any], machine: str, field: str, unit: str, tag: str = "td") -> str:
    value = record.get(field)
    title = f' title="{escape(figures.fmt_duration(value))}"' if unit == "s" else ""
    return (
        f'<{tag} data-machine="{escape(machine)}" data-window="{escape(str(record.get("name")))}" '
        f'data-field="{field}" data-value="{_value_attr(value)}"{title}>'
        f"{escape(_fmt(value, unit))}</{tag}>"
    )


def render(data: ReportData) -> str:
    """The whole page."""
    body = [_header(data)]
    if data.contracts:
        body.append(_contracts(data.contracts))
    for machine in data.machines.values():
        body.append(_machine(data, machine))
    if not data.machines:
        body.append('<section class="machine"><p>No published records in this range.</p></section>')
    title = f"{data.title} {figures.fmt_time(data.start)} to {figures.fmt_time(data.end)}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>"
        + "".join(body)
        + "</main></body></html>\n"
    )


def _header(data: ReportData) -> str:
    v = data.verification
    if v is None:
        banner = '<div class="verify none">Evidence chain: not checked</div>'
    else:
        cls = "none" if v.ok is None else "ok" if v.ok else "bad"
        items = "".join(f"<li>{escape(d)}</li>" for d in v.details)
        banner = (
            f'<div class="verify {cls}" id="verification">Evidence chain: {escape(v.summary)}'
            + (f"<ul>{items}</ul>" if items else "")
            + "</div>"
        )
    hashes = "".join(
        f'<li>{escape(name)}: <code class="profile-hash" data-machine="{escape(name)}">'
        f"{escape(str((m.profile or {}).get('hash') or _record_hash(m) or 'unknown'))}</code></li>"
        for name, m in data.machines.items()
    )
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in data.notes)
    return (
        f"<header><h1>{escape(data.title)}</h1>"
        f'<div class="meta">From <b>{figures.fmt_time(data.start)}</b> to '
        f"<b>{figures.fmt_time(data.end)}</b>"
        f"{' · agent <b>' + escape(data.agent) + '</b>' if data.agent else ''}"
        f" · source {escape(data.source)} · generated {figures.fmt_time(data.generated_at)}</div>"
        f'{banner}<div class="meta">KPI profile hash per machine:<ul>{hashes}</ul></div>'
        f"{notes}</header>"
    )


def _record_hash(machine: MachineData) -> str | None:
    for rec in reversed(machine.records):
        if rec.get("profile_hash"):
            return str(rec["profile_hash"])
    return None


def _contracts(statuses: Sequence[Mapping[str, Any]]) -> str:
    rows: list[str] = []
    for status in statuses:
        name, period = str(status.get("contract")), str(status.get("period"))
        final = " (closed)" if status.get("final") else " (so far)"
        for term in status.get("terms", []):
            unit = term.get("unit", "")
            first = True
            for level in term.get("levels", []):
                rows.append(
                    f'<tr data-contract="{escape(name)}" data-term="{escape(term["term"])}">'
                    f'<td class="l">{escape(name) if first else ""}</td>'
                    f'<td class="l">{escape(period + final) if first else ""}</td>'
                    f'<td class="l">{escape(term["term"]) if first else ""}</td>'
                    f'<td class="l">{escape(level["level"])}</td>'
                    f"<td>{escape(term['direction'])} "
                    f"{escape(format_value(level['threshold'], unit))}</td>"
                    f'<td data-field="so_far" data-value="{_value_attr(term.get("so_far"))}">'
                    f"{escape(format_value(term.get('so_far'), unit))}</td>"
                    f'<td class="l state-{escape(level["state"])}">{escape(level["state"])}</td>'
                    f"<td>{escape(format_budget(level.get('budget'), term.get('budget_unit')))}"
                    "</td>"
                    f"<td>{escape(format_value(term.get('forecast'), unit))}</td></tr>"
                )
                first = False
        coverage = format_value(status.get("data_coverage"), "ratio")
        rows.append(
            f'<tr data-contract="{escape(name)}"><td class="l note" colspan="9">'
            f"{escape(name)} {escape(period)}: data coverage "
            f"{escape(coverage)}, status at {escape(str(status.get('at', '')))}, contract hash "
            f"<code>{escape(str(status.get('contract_hash', ''))[:16])}…</code></td></tr>"
        )
    return (
        '<section class="contracts"><h2>Contract terms</h2><div class="scroll"><table>'
        '<tr><th class="l">contract</th><th class="l">period</th><th class="l">term</th>'
        '<th class="l">level</th><th>target</th><th>value</th><th class="l">state</th>'
        "<th>budget left</th><th>forecast</th></tr>" + "".join(rows) + "</table></div></section>"
    )


def _machine(data: ReportData, m: MachineData) -> str:
    head = figures.headline(m.records, data.start, data.end)
    segments = figures.timeline(m, data.start, data.end, data.generated_at)
    parts = [f'<section class="machine" id="machine-{escape(m.name)}"><h2>{escape(m.name)}</h2>']
    if head is not None:
        state = "final" if head.get("final") else "so far"
        a, b = iso_to_s(head.get("start")), iso_to_s(head.get("end"))
        partial = (
            '<p class="note">The period figures are this window\'s record; it does not span '
            "the whole range (no KPI window of the agent does): see the KPI table for the "
            "other windows.</p>"
            if a is not None and b is not None and (a > data.start + 1 or b < data.end - 60)
            else ""
        )
        flags = " · flags: " + escape(", ".join(head["flags"])) if head.get("flags") else ""
        parts.append(
            f'<p class="meta">Period figures: window <b class="headline" data-machine="'
            f'{escape(m.name)}">{escape(str(head.get("name")))}</b> ({state}, revision '
            f"{head.get('revision')}, {escape(str(head.get('start')))} to "
            f"{escape(str(head.get('end')))}) · profile "
            f"<code>{escape(str(head.get('profile_hash', ''))[:16])}…</code>"
            f"{flags}</p>{partial}"
        )
        parts.append(
            '<div class="cards">'
            + "".join(
                f'<div class="card"><div class="k">{label}</div>'
                + _cell(head, m.name, key, unit, tag="div").replace("<div ", '<div class="v" ', 1)
                + "</div>"
                for key, label, unit in CARDS
            )
            + "</div>"
        )
    parts.append("<h3>State timeline</h3>" + svg.timeline(segments, data.start, data.end, m.name))
    totals = figures.state_totals(segments)
    codes = [s.fault for s in segments if s.category == figures.BREAKDOWN]
    legend = []
    for category in svg.COLORS:
        if category == figures.BREAKDOWN:
            for code in sorted(set(codes)):
                secs = sum(
                    s.end - s.start for s in segments if s.category == category and s.fault == code
                )
                label = "breakdown: " + figures.fault_label(code, m.fault_names)
                legend.append((svg.fault_color(code, codes), label, secs))
        elif category in totals:
            legend.append((svg.COLORS[category], category, totals[category]))
    parts.append(
        '<div class="legend">'
        + "".join(
            f'<span><i style="background:{color}"></i>{escape(label)} '
            f"{figures.fmt_duration(secs)}</span>"
            for color, label, secs in legend
        )
        + "</div>"
    )
    parts.append(_pareto(m, head))
    parts.append(_waterfall(m, head))
    parts.append(_kpi_table(m, data))
    parts.append(_stops(m))
    parts.append("</section>")
    return "".join(parts)


def _pareto(m: MachineData, head: Mapping[str, Any] | None) -> str:
    rows = figures.pareto(m, head)
    out = ["<h3>Downtime Pareto by fault</h3>"]
    if not rows:
        return (
            out[0] + '<p class="note pareto-empty">No downtime above the micro-stop threshold.</p>'
        )
    out.append(svg.pareto(rows, m.name))
    body = "".join(
        f'<tr class="pareto-row" data-code="{r.code}"><td>{escape(r.label)}</td>'
        f'<td class="l">{r.attribution}</td>'
        f'<td data-field="downtime_by_code" data-code="{r.code}" '
        f'data-value="{_value_attr(r.seconds)}">'
        f"{escape(figures.fmt_seconds(r.seconds))}</td><td>{r.count}</td>"
        f"<td>{r.cumulative * 100:.1f} %</td></tr>"
        for r in rows
    )
    provider, customer = (
        (head or {}).get("downtime_provider_s"),
        (head or {}).get("downtime_customer_s"),
    )
    out.append(
        '<div class="scroll"><table><tr><th>fault</th><th class="l">attribution</th>'
        "<th>downtime</th><th>stops</th><th>cumulative</th></tr>"
        + body
        + "</table></div>"
        + f'<p class="note">Downtime by code from window {escape(str((head or {}).get("name")))}'
        f" (the record's downtime_by_code); stops counted from the stop events. Provider "
        f"{escape(figures.fmt_seconds(provider))}, customer "
        f"{escape(figures.fmt_seconds(customer))}.</p>"
    )
    return "".join(out)


def _waterfall(m: MachineData, head: Mapping[str, Any] | None) -> str:
    steps = figures.waterfall(head)
    if not steps:
        return ""
    rows = "".join(
        f'<tr><td>{escape(s.label)}</td><td class="waterfall-value" data-step="{escape(s.field)}" '
        f'data-value="{_value_attr(round(s.seconds, 3))}">'
        f"{escape(figures.fmt_seconds(round(s.seconds, 3)))}"
        f'</td><td class="l note">{escape(s.field)}</td></tr>'
        for s in steps
    )
    return (
        "<h3>Loss waterfall: planned to fully productive time</h3>"
        + svg.waterfall(steps)
        + '<div class="scroll"><table><tr><th>step</th><th>time</th><th class="l">from</th></tr>'
        + rows
        + '</table></div><p class="note">The last bars are derived: net operating time = '
        "operating_time_s &times; performance_capped, fully productive = net &times; quality.</p>"
    )


def _kpi_table(m: MachineData, data: ReportData) -> str:
    records = figures.table_records(m.records, data.start, data.end)
    if not records:
        return '<h3>KPIs</h3><p class="note">No KPI record in this range.</p>'
    head = "".join(f"<th>{escape(label)}</th>" for _, label, _ in KPI_COLUMNS)
    rows = "".join(
        f'<tr class="kpi-row" data-window="{escape(str(r.get("name")))}">'
        f"<td>{escape(str(r.get('name')))}"
        f"{'' if r.get('final') else ' <span class=note>(so far)</span>'}"
        f"{' r' + str(r.get('revision')) if r.get('revision') else ''}</td>"
        + "".join(_cell(r, m.name, key, unit) for key, _, unit in KPI_COLUMNS)
        + f'<td class="l">{escape(", ".join(r.get("flags") or []))}</td></tr>'
        for r in records
    )
    return (
        '<h3>KPIs per period, day and shift</h3><div class="scroll"><table class="kpi">'
        f'<tr><th class="l">window</th>{head}<th class="l">flags</th></tr>{rows}</table></div>'
    )


def _stops(m: MachineData) -> str:
    rows = figures.stop_rows(m)
    if not rows:
        return '<h3>Stops</h3><p class="note">No stop in this range.</p>'
    body = "".join(
        f'<tr class="stop-row" data-event="{escape(r.event_id)}">'
        f"<td>{figures.fmt_time(r.start)}</td>"
        f"<td>{figures.fmt_time(r.end) if r.end is not None else 'open'}</td>"
        f'<td data-field="duration_s" data-value="{_value_attr(r.duration_s)}">'
        f"{escape(figures.fmt_seconds(r.duration_s))}</td>"
        f'<td class="l">{escape(r.cls)}</td><td class="l">{escape(r.fault)}</td>'
        f'<td class="l">{escape(r.attribution)}</td>'
        f"<td>{escape(figures.fmt_duration(r.acknowledged_after_s))}</td>"
        f"<td>{escape(figures.fmt_duration(r.arrived_after_s))}</td></tr>"
        for r in rows
    )
    return (
        f'<h3>Stops ({len(rows)})</h3><div class="scroll"><table class="stops"><tr>'
        '<th class="l">start</th><th>end</th><th>duration</th><th class="l">class</th>'
        '<th class="l">fault</th><th class="l">attribution</th><th>acknowledged after</th>'
        f"<th>arrived after</th></tr>{body}</table></div>"
    )
