"""The per-window output record (spec §3.12) and ratio-of-sums aggregation (§3.11).

:class:`KpiRecord` holds only *components* (times, counts, events, flags);
every ratio is derived from them by :func:`kpi_ratios` with the null rules of
spec §3.8 to §3.10, so a longer period is computed by summing components and
applying the same formulas (:func:`aggregate`), never by averaging ratios.
Ratios are rounded to 6 decimals (the vectors' tolerance is 1e-6); times are
seconds, exact to the millisecond. No I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_agent.kpi.timeutil import MS_PER_S, format_instant

RATIO_DECIMALS = 6

TIME_FIELDS = (
    "calendar_time_s",
    "planned_time_s",
    "excluded_time_s",
    "non_scheduled_time_s",
    "unknown_time_s",
    "running_time_s",
    "micro_stop_time_s",
    "downtime_breakdown_s",
    "downtime_other_s",
    "downtime_customer_s",
    "downtime_provider_s",
    "ttr_sum_s",
)
COUNT_FIELDS = (
    "stops",
    "micro_stops",
    "failures",
    "total_count",
    "good_count",
    "unattributed_total_count",
    "out_of_plan_total_count",
    "out_of_plan_good_count",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiRecord:
    """Components of one report window plus its identity and evidence.

    Times are in seconds; ``downtime_by_code`` maps a fault code as a string
    ("0" = none) to seconds of downtime (stops above the micro-stop threshold).
    """

    name: str
    start: float
    end: float
    calendar_time_s: float = 0.0
    planned_time_s: float = 0.0
    excluded_time_s: float = 0.0
    non_scheduled_time_s: float = 0.0
    unknown_time_s: float = 0.0
    running_time_s: float = 0.0
    micro_stop_time_s: float = 0.0
    pending_stop_s: float = 0.0
    downtime_breakdown_s: float = 0.0
    downtime_other_s: float = 0.0
    downtime_customer_s: float = 0.0
    downtime_provider_s: float = 0.0
    ttr_sum_s: float = 0.0
    downtime_by_code: Mapping[str, float] = field(default_factory=dict)
    stops: int = 0
    micro_stops: int = 0
    failures: int = 0
    total_count: int = 0
    good_count: int = 0
    unattributed_total_count: int = 0
    out_of_plan_total_count: int = 0
    out_of_plan_good_count: int = 0
    flags: tuple[str, ...] = ()
    ideal_cycle_time_s: float = 1.0
    min_coverage: float = 0.95
    revision: int = 0
    final: bool = False
    spec_version: str = ""
    profile_hash: str = ""

    def components(self) -> dict[str, Any]:
        """The summable components (what an aggregate is built from)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in TIME_FIELDS + COUNT_FIELDS}
        out["pending_stop_s"] = self.pending_stop_s
        out["downtime_by_code"] = dict(self.downtime_by_code)
        out["flags"] = list(self.flags)
        return out

    def as_dict(self) -> dict[str, Any]:
        """The spec §3.12 record plus identity and evidence fields, JSON-serialisable."""
        comp = self.components()
        out: dict[str, Any] = {
            "window": self.name,
            "window_kind": self.name.split(":", 1)[0],
            "start": format_instant(round(self.start * MS_PER_S)),
            "end": format_instant(round(self.end * MS_PER_S)),
            "revision": self.revision,
            "final": self.final,
        }
        out.update(derive(comp, self.ideal_cycle_time_s, self.min_coverage))
        out["spec_version"] = self.spec_version
        out["profile_hash"] = self.profile_hash
        return out

    def with_meta(self, **changes: Any) -> KpiRecord:
        """A copy with identity fields (revision, final, ...) replaced."""
        return dataclasses.replace(self, **changes)


def _ratio(num: float, den: float) -> float:
    return round(num / den, RATIO_DECIMALS)


def _clean(seconds: float) -> float:
    """Round away float noise from ms sums (times are exact to the millisecond)."""
    return round(seconds, 3)


def derive(comp: Mapping[str, Any], ict: float, min_coverage: float) -> dict[str, Any]:
    """Spec §3.12 output fields from summed components (formulas and nulls of §3.8 to §3.10)."""
    t = {k: _clean(float(comp[k])) for k in TIME_FIELDS}
    planned = t["planned_time_s"]
    unknown = t["unknown_time_s"]
    known = _clean(planned - unknown)
    downtime = _clean(t["downtime_breakdown_s"] + t["downtime_other_s"])
    operating = _clean(t["running_time_s"] + t["micro_stop_time_s"])
    # An open stop not longer than the micro-stop threshold yet (so-far records only):
    # its own component, and the ratios treat it as a micro-stop (spec §3.6).
    pending = _clean(float(comp.get("pending_stop_s", 0.0)))
    op_r = _clean(operating + pending)
    total = int(comp["total_count"])
    good = int(comp["good_count"])
    unattributed = int(comp["unattributed_total_count"])
    attributed = total - unattributed
    failures = int(comp["failures"])
    flags = set(comp.get("flags", ()))

    coverage = _ratio(known, planned) if planned > 0 else None
    availability = _ratio(op_r, known) if known > 0 else None
    worst = _ratio(op_r, planned) if planned > 0 else None
    performance = _ratio(ict * attributed, op_r) if known > 0 and op_r > 0 else None
    capped = min(performance, 1.0) if performance is not None else None
    quality = _ratio(good, total) if total > 0 and known > 0 else None
    oee: float | None
    if known <= 0:
        oee = None
    elif availability == 0 or total == 0:
        oee = 0.0
    else:
        raw_p = ict * attributed / op_r if op_r > 0 else 0.0
        oee = round((op_r / known) * min(raw_p, 1.0) * (good / total), RATIO_DECIMALS)
    customer = t["downtime_customer_s"]
    provider = t["downtime_provider_s"]
    base = known - customer
    sla = _ratio(base - provider, base) if planned > 0 and base > 0 else None
    cycle = _ratio(op_r, attributed) if op_r > 0 and attributed > 0 else None
    throughput = _ratio(3600.0 * total, known) if known > 0 else None
    iso = _ratio(t["running_time_s"], known) if known > 0 else None

    if performance is not None and ict * attributed > op_r:
        flags.add("performance_capped")
    if coverage is not None and known / planned < min_coverage:
        flags.add("low_coverage")
    if planned <= 0:
        flags.add("no_planned_time")
    if int(comp["out_of_plan_total_count"]) > 0:
        flags.add("out_of_plan_production")
    if op_r > 0 and total == 0:
        flags.add("no_counts_while_running")
    if unattributed > 0:
        flags.add("counts_span_unknown")
    if good > total:
        flags.add("count_inconsistent")

    return {
        "calendar_time_s": t["calendar_time_s"],
        "planned_time_s": planned,
        "excluded_time_s": t["excluded_time_s"],
        "non_scheduled_time_s": t["non_scheduled_time_s"],
        "unknown_time_s": unknown,
        "running_time_s": t["running_time_s"],
        "micro_stop_time_s": t["micro_stop_time_s"],
        "pending_stop_s": pending,
        "operating_time_s": operating,
        "downtime_breakdown_s": t["downtime_breakdown_s"],
        "downtime_other_s": t["downtime_other_s"],
        "downtime_total_s": downtime,
        "downtime_by_code": {
            k: _clean(v) for k, v in sorted(comp["downtime_by_code"].items(), key=_code_key)
        },
        "downtime_customer_s": customer,
        "downtime_provider_s": provider,
        "ttr_sum_s": t["ttr_sum_s"],
        "stops": int(comp["stops"]),
        "micro_stops": int(comp["micro_stops"]),
        "failures": failures,
        "total_count": total,
        "good_count": good,
        "unattributed_total_count": unattributed,
        "out_of_plan_total_count": int(comp["out_of_plan_total_count"]),
        "out_of_plan_good_count": int(comp["out_of_plan_good_count"]),
        "data_coverage": coverage,
        "availability": availability,
        "availability_if_unknown_down": worst,
        "availability_iso": iso,
        "performance": performance,
        "performance_capped": capped,
        "quality": quality,
        "oee": oee,
        "mtbf_s": _ratio(op_r, failures) if failures else None,
        "mttr_s": _ratio(t["ttr_sum_s"], failures) if failures else None,
        "sla_availability": sla,
        "actual_cycle_time_s": cycle,
        "throughput_per_h": throughput,
        "flags": sorted(flags),
    }


def _code_key(item: tuple[str, float]) -> tuple[int, str]:
    code = item[0]
    try:
        return (int(code), code)
    except ValueError:
        return (0, code)


def sum_components(records: Iterable[KpiRecord | Mapping[str, Any]]) -> dict[str, Any]:
    """Sum the components of several records (records or their ``as_dict()`` forms)."""
    out: dict[str, Any] = dict.fromkeys(TIME_FIELDS, 0.0)
    out.update(dict.fromkeys(COUNT_FIELDS, 0))
    out["pending_stop_s"] = 0.0
    by_code: dict[str, float] = {}
    flags: set[str] = set()
    for rec in records:
        comp = rec.components() if isinstance(rec, KpiRecord) else rec
        for k in TIME_FIELDS + COUNT_FIELDS:
            out[k] += comp[k]
        out["pending_stop_s"] += comp.get("pending_stop_s", 0.0)
        for code, secs in comp["downtime_by_code"].items():
            by_code[code] = by_code.get(code, 0.0) + secs
        flags.update(comp.get("flags", ()))
    out["downtime_by_code"] = by_code
    # Derived flags are recomputed on the sums; event-level flags carry over.
    out["flags"] = sorted(flags & _CARRIED_FLAGS)
    return out


_CARRIED_FLAGS = frozenset(
    {
        "counter_wrap",
        "counter_reset",
        "counter_anomaly",
        "clock_step",
        "conflicting_duplicate",
        "calendar_24_7",
    }
)


def aggregate(
    records: Iterable[KpiRecord | Mapping[str, Any]],
    *,
    ideal_cycle_time_s: float | None = None,
    min_coverage: float | None = None,
) -> dict[str, Any]:
    """KPIs of a longer period as ratios of summed components (spec §3.11, V20).

    Records must be non-overlapping windows of one machine. ``ideal_cycle_time_s``
    and ``min_coverage`` default to the first KpiRecord's values.
    """
    items = list(records)
    first = next((r for r in items if isinstance(r, KpiRecord)), None)
    ict = ideal_cycle_time_s or (first.ideal_cycle_time_s if first else None)
    if ict is None:
        raise ValueError("ideal_cycle_time_s is required to aggregate record dicts")
    cov = min_coverage if min_coverage is not None else (first.min_coverage if first else 0.95)
    return derive(sum_components(items), ict, cov)
