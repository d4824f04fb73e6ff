"""Pure derivations for the report's charts and tables, always from published material.

No KPI is recomputed here: the figures shown are the records' own fields, formatted
without changing their value (ratios as a percentage with every published decimal,
seconds to the millisecond the engine works in). What is derived is labelled as such:
the timeline (intervals joined with stop events for their class), the Pareto's counts
(stop events per fault code) and the waterfall's last two bars (operating time x
performance, x quality).

Size: just over 400 lines because every chart and table of the report derives its
figures here, side by side, so what is derived (and labelled so) can be reviewed at once.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from edge_agent.report.model import MachineData
from edge_agent.report.records import iso_to_s

#: Attribution of stops without a fault code.
UNATTRIBUTED = "not attributed"
#: What a missing figure shows (an en dash).
NONE = "\u2013"

# Timeline categories, in legend order.
RUNNING = "running"
MICRO = "micro-stop"
IDLE = "idle"
BREAKDOWN = "breakdown"
EXCLUDED = "excluded"
UNKNOWN = "unknown"

#: Window kinds of the KPI table, widest first ("period" rows, then day, shift, hour).
KIND_ORDER = ("contract", "month", "day", "shift", "hour")
#: Hour rows are listed only for ranges up to this long (a month has 720 of them).
HOURS_UP_TO_S = 2 * 86_400.0


def fmt_ratio(value: Any) -> str:
    """A published ratio as a percentage with all its decimals: 0.980247 -> ``98.0247 %``."""
    if not isinstance(value, int | float):
        return NONE
    text = f"{value * 100:.4f}".rstrip("0").rstrip(".")
    return f"{text} %"


def fmt_seconds(value: Any) -> str:
    """Seconds exactly as published: 1800.0 -> ``1,800 s``, 3.9645 -> ``3.9645 s``."""
    if not isinstance(value, int | float):
        return NONE
    text = f"{value:,}"  # the shortest text that reads back as the same float
    return f"{text.removesuffix('.0')} s"


def fmt_duration(value: Any) -> str:
    """Seconds for people: ``2 h 05 min``, ``3 min 12 s``, ``41.5 s``."""
    if not isinstance(value, int | float):
        return NONE
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s"


def fmt_count(value: Any) -> str:
    """A count with thousands separators."""
    return f"{value:,}" if isinstance(value, int) else NONE


def fmt_time(ts: float | None) -> str:
    """UNIX seconds as ``2026-12-04 11:45:04 UTC``."""
    if ts is None:
        return NONE
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def window_kind(record: Mapping[str, Any]) -> str:
    """``day`` for ``day:2026-12-04``, ``contract`` for ``contract:...``."""
    return str(record.get("name", "")).split(":", 1)[0]


def table_records(records: Sequence[Mapping[str, Any]], start: float, end: float) -> list[Any]:
    """The KPI table's rows: widest windows first, hours only for short ranges."""
    rows = [
        r
        for r in records
        if window_kind(r) in KIND_ORDER
        and (window_kind(r) != "hour" or end - start <= HOURS_UP_TO_S)
    ]
    return sorted(rows, key=lambda r: (KIND_ORDER.index(window_kind(r)), str(r.get("start"))))


def headline(records: Sequence[Mapping[str, Any]], start: float, end: float) -> Any:
    """The record the period's figures come from: the widest window inside the range.

    When no window lies inside the range, the narrowest one around it, else the
    narrowest one overlapping it (a "so far" window ends when it was computed). Never a
    recomputation: the report names the window it shows.
    """

    def span(r: Mapping[str, Any]) -> float:
        a, b = iso_to_s(r.get("start")), iso_to_s(r.get("end"))
        return (b or 0.0) - (a or 0.0)

    def inside(r: Mapping[str, Any]) -> bool:
        a, b = iso_to_s(r.get("start")), iso_to_s(r.get("end"))
        return a is not None and b is not None and a >= start - 1e-3 and b <= end + 1e-3

    def covers(r: Mapping[str, Any]) -> bool:
        a, b = iso_to_s(r.get("start")), iso_to_s(r.get("end"))
        return a is not None and b is not None and a <= start + 1e-3 and b >= end - 1e-3

    def rank(r: Mapping[str, Any]) -> tuple[float, bool, int]:
        return span(r), bool(r.get("final")), int(r.get("revision") or 0)

    pool = [r for r in records if inside(r)]
    if pool:
        return max(pool, key=rank)
    around = [r for r in records if covers(r)]
    if around:  # a range shorter than any window: the narrowest window around it
        return min(around, key=lambda r: (span(r), not r.get("final")))
    # A "so far" record ends at its computation time: the narrowest window overlapping.
    return min(records, key=lambda r: (span(r), not r.get("final"))) if records else None


def customer_codes(profile: Mapping[str, Any] | None) -> list[tuple[int, int]]:
    """The profile's ``sla.customer_fault_codes`` as inclusive ranges."""
    sla = (profile or {}).get("sla") or {}
    out: list[tuple[int, int]] = []
    for item in sla.get("customer_fault_codes") or []:
        if isinstance(item, int):
            out.append((item, item))
        elif isinstance(item, list | tuple) and len(item) == 2:
            out.append((int(item[0]), int(item[1])))
    return out


def attribution(code: int, profile: Mapping[str, Any] | None) -> str:
    """``customer`` when the code is in the profile's customer list, else ``provider``.

    Stops without a fault code are neither's (the record counts them in neither
    ``downtime_customer_s`` nor ``downtime_provider_s``).
    """
    if code == 0:
        return UNATTRIBUTED
    return "customer" if any(lo <= code <= hi for lo, hi in customer_codes(profile)) else "provider"


def fault_label(code: int, names: Mapping[int, str]) -> str:
    """``23 Jam at infeed``; code 0 is "no fault code"."""
    if code == 0:
        return "no fault code"
    name = names.get(code)
    return f"{code} {name}" if name else f"code {code}"


@dataclass(frozen=True, slots=True)
class Segment:
    """One stretch of the state timeline."""

    start: float
    end: float
    category: str  # one of the constants above
    label: str  # "breakdown: 23 Jam at infeed"
    fault: int = 0


class _StopIndex:
    """The stop event under an instant, by binary search (stops are in start order)."""

    def __init__(self, stops: Sequence[Mapping[str, Any]]) -> None:
        self.stops = sorted(stops, key=lambda s: float(s.get("start") or 0.0))
        self.starts = [float(s.get("start") or 0.0) for s in self.stops]

    def at(self, instant: float) -> Mapping[str, Any] | None:
        i = bisect.bisect_right(self.starts, instant + 1e-3) - 1
        if i < 0:
            return None
        stop = self.stops[i]
        finish = stop.get("end")
        return stop if finish is None or instant < float(finish) else None


def timeline(machine: MachineData, start: float, end: float, now: float) -> list[Segment]:
    """The machine's states over ``[start, end)``: intervals, classed by their stop event.

    A stopped interval takes its stop event's class (micro-stop, breakdown with its
    fault name, idle for "other"); excluded windows of the profile lie on top; time
    without an interval is unknown.
    """
    out: list[Segment] = []
    cursor = start
    index = _StopIndex(machine.stops)
    for iv in machine.intervals:
        a = max(start, float(iv["start"]))
        raw_end = iv.get("end")
        b = min(end, float(raw_end) if isinstance(raw_end, int | float) else min(now, end))
        if b <= a:
            continue
        if a > cursor:
            out.append(Segment(cursor, a, UNKNOWN, "unknown (no data)"))
        out.append(_classify(machine, index, iv, a, b))
        cursor = max(cursor, b)
    if cursor < end:
        out.append(Segment(cursor, end, UNKNOWN, "unknown (no data)"))
    return _merged(_with_exclusions(out, machine.profile, start, end))


def _merged(segments: list[Segment]) -> list[Segment]:
    """Adjacent segments of the same category and fault as one (fewer shapes, same picture)."""
    out: list[Segment] = []
    for seg in segments:
        last = out[-1] if out else None
        if (
            last is not None
            and last.category == seg.category
            and last.fault == seg.fault
            and last.label == seg.label
            and abs(last.end - seg.start) < 1e-6
        ):
            out[-1] = Segment(last.start, seg.end, seg.category, seg.label, seg.fault)
        else:
            out.append(seg)
    return out


def _classify(
    machine: MachineData, index: _StopIndex, iv: Mapping[str, Any], a: float, b: float
) -> Segment:
    state = iv.get("state")
    fault = int(iv.get("fault") or 0)
    if state == "running":
        return Segment(a, b, RUNNING, "running")
    if state != "stopped":
        return Segment(a, b, UNKNOWN, "unknown (no data)")
    stop = index.at(float(iv["start"]))
    cls = stop.get("class") if stop else None
    code = int((stop or {}).get("fault") or fault)
    if cls == "micro":
        return Segment(a, b, MICRO, "micro-stop", code)
    if cls == "breakdown" or (cls is None and code):
        return Segment(
            a, b, BREAKDOWN, "breakdown: " + fault_label(code, machine.fault_names), code
        )
    return Segment(a, b, IDLE, "idle (stop without fault code)", code)


def _with_exclusions(
    segments: list[Segment], profile: Mapping[str, Any] | None, start: float, end: float
) -> list[Segment]:
    spans: list[tuple[float, float, str]] = []
    for item in (profile or {}).get("exclusions") or []:
        if not isinstance(item, dict):
            continue
        a, b = iso_to_s(item.get("start")), iso_to_s(item.get("end"))
        if a is not None and b is not None and a < end and b > start:
            spans.append((max(a, start), min(b, end), str(item.get("reason") or "")))
    if not spans:
        return segments
    out: list[Segment] = []
    for seg in segments:
        pieces = [(seg.start, seg.end)]
        for a, b, _ in spans:
            pieces = [p for lo, hi in pieces for p in ((lo, min(hi, a)), (max(lo, b), hi))]
            pieces = [(lo, hi) for lo, hi in pieces if hi > lo]
        out += [Segment(lo, hi, seg.category, seg.label, seg.fault) for lo, hi in pieces]
    out += [Segment(a, b, EXCLUDED, f"excluded: {reason}".rstrip(": ")) for a, b, reason in spans]
    return sorted(out, key=lambda s: s.start)


def state_totals(segments: Sequence[Segment]) -> dict[str, float]:
    """Seconds per timeline category (the legend's figures; intervals, not a KPI)."""
    totals: dict[str, float] = {}
    for seg in segments:
        totals[seg.category] = totals.get(seg.category, 0.0) + (seg.end - seg.start)
    return totals


@dataclass(frozen=True, slots=True)
class ParetoRow:
    """One fault code's downtime (the record's ``downtime_by_code``) and stop count."""

    code: int
    label: str
    seconds: float
    count: int
    attribution: str
    cumulative: float  # share of the total up to this row, 0..1


def pareto(machine: MachineData, record: Mapping[str, Any] | None) -> list[ParetoRow]:
    """Downtime by fault code from the record, largest first, with the stops counted."""
    if record is None:
        return []
    by_code = record.get("downtime_by_code") or {}
    a, b = iso_to_s(record.get("start")), iso_to_s(record.get("end"))
    counts: dict[int, int] = {}
    for stop in machine.stops:
        begin = float(stop.get("start") or 0.0)
        if stop.get("class") == "micro" or a is None or b is None or not a <= begin < b:
            continue
        code = int(stop.get("fault") or 0)
        counts[code] = counts.get(code, 0) + 1
    items = sorted(
        ((int(code), float(secs)) for code, secs in by_code.items()), key=lambda x: (-x[1], x[0])
    )
    total = sum(s for _, s in items) or 1.0
    rows: list[ParetoRow] = []
    running = 0.0
    for code, secs in items:
        running += secs
        rows.append(
            ParetoRow(
                code=code,
                label=fault_label(code, machine.fault_names),
                seconds=secs,
                count=counts.get(code, 0),
                attribution=attribution(code, machine.profile),
                cumulative=running / total,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class Step:
    """One bar of the loss waterfall: a level (``total``) or a loss."""

    label: str
    seconds: float
    kind: str  # "total" | "loss"
    field: str  # the record field it shows, or how it is derived


def waterfall(record: Mapping[str, Any] | None) -> list[Step]:
    """Planned time down to fully productive time (spec §3.8's loss chain).

    Planned time, minus unknown time and the stops (availability loss) is the
    operating time (all published); operating time x performance is net operating
    time; x quality is fully productive time (derived from the published ratios).
    """
    if record is None:
        return []
    planned = float(record.get("planned_time_s") or 0.0)
    unknown = float(record.get("unknown_time_s") or 0.0)
    operating = float(record.get("operating_time_s") or 0.0)
    stops = float(record.get("downtime_breakdown_s") or 0.0) + float(
        record.get("downtime_other_s") or 0.0
    )
    steps = [
        Step("planned time", planned, "total", "planned_time_s"),
        Step("unknown (no data)", unknown, "loss", "unknown_time_s"),
        Step("availability loss: stops", stops, "loss", "downtime_breakdown_s+downtime_other_s"),
        Step("operating time", operating, "total", "operating_time_s"),
    ]
    perf, qual = record.get("performance_capped"), record.get("quality")
    if isinstance(perf, int | float):
        net = operating * perf
        steps += [
            Step("performance loss", operating - net, "loss", "operating_time_s*(1-performance)"),
            Step("net operating time", net, "total", "operating_time_s*performance"),
        ]
        if isinstance(qual, int | float):
            full = net * qual
            steps += [
                Step("quality loss", net - full, "loss", "net*(1-quality)"),
                Step("fully productive time", full, "total", "net*quality"),
            ]
    return steps


@dataclass(frozen=True, slots=True)
class StopRow:
    """One stop of the stop list."""

    event_id: str
    start: float
    end: float | None
    duration_s: float
    cls: str
    fault: str
    attribution: str
    acknowledged_after_s: float | None
    arrived_after_s: float | None


def stop_rows(machine: MachineData) -> list[StopRow]:
    """Every stop (open ones too) with the time to acknowledgement and to arrival."""
    out: list[StopRow] = []
    for stop in machine.stops:
        begin = float(stop.get("start") or 0.0)
        code = int(stop.get("fault") or 0)
        ack, arrived = iso_to_s(stop.get("acknowledged_at")), iso_to_s(stop.get("arrived_at"))
        end = stop.get("end")
        out.append(
            StopRow(
                event_id=str(stop.get("event_id") or ""),
                start=begin,
                end=float(end) if isinstance(end, int | float) else None,
                duration_s=float(stop.get("duration_s") or 0.0),
                cls=str(stop.get("class") or ""),
                fault=fault_label(code, machine.fault_names),
                attribution=attribution(code, machine.profile),
                acknowledged_after_s=None if ack is None else ack - begin,
                arrived_after_s=None if arrived is None else arrived - begin,
            )
        )
    return out
