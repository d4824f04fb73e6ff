"""The calculation profile of one machine (spec §3.1) and its validated parsing.

:class:`KpiProfile` holds exactly the parameters of spec §3.1, already
converted to the units the engine uses (integer epoch milliseconds for UTC
intervals). :func:`parse_profile` reads them through
:class:`~edge_agent.configkit.Table`, so every error names the dotted key path;
it is used both for ``[machines.<m>.kpi]`` in the agent config and for the top
level of a replay ``PROFILE.toml``. :func:`profile_hash` fingerprints the
parameters so each output record carries evidence of how it was computed.
This module does no I/O and never reads the clock.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_agent.configkit import Table, describe
from edge_agent.kpi.timeutil import datetime_to_ms, format_instant, parse_instant

SPEC_VERSION = "kpi-spec/1"
"""Version of the normative KPI specification this calculator implements."""

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class Weekday(enum.Enum):
    """Day of the week a shift starts on (local date of its start time)."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def index(self) -> int:
        """ISO weekday index, Monday = 0."""
        return list(Weekday).index(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class UtcInterval:
    """A half-open UTC interval ``[start_ms, end_ms)`` in epoch milliseconds."""

    start_ms: int
    end_ms: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Shift:
    """A daily local shift ``HH:MM`` to ``HH:MM`` (``end <= start`` ends the next day)."""

    name: str
    start_min: int
    end_min: int
    days: frozenset[int] = frozenset(range(7))


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiProfile:
    """Every parameter of spec §3.1 for one machine."""

    ideal_cycle_time_s: float
    micro_stop_threshold_s: float = 120.0
    max_gap_s: float = 3600.0
    counter_bits: int = 32
    wrap_rate_factor: float = 2.0
    min_coverage: float = 0.95
    clock_step_tolerance_s: float = 2.0
    timezone: str = "UTC"
    planned_windows: tuple[UtcInterval, ...] = ()
    shifts: tuple[Shift, ...] = ()
    exclusions: tuple[UtcInterval, ...] = ()
    customer_fault_codes: tuple[tuple[int, int], ...] = ()
    # Spec §3.4: a profile that declares neither shifts nor planned windows is planned
    # 24/7 (records carry the flag calendar_24_7); ``planned_windows = []`` plans nothing.
    always_planned: bool = False
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.ideal_cycle_time_s > 0:
            raise ValueError("ideal_cycle_time_s must be > 0")
        object.__setattr__(self, "_zone", ZoneInfo(self.timezone))

    @property
    def zone(self) -> ZoneInfo:
        """The profile's IANA zone as a ZoneInfo."""
        return self._zone

    def is_customer_code(self, code: int) -> bool:
        """Whether a fault code falls in one of the customer-attributable ranges."""
        return any(lo <= code <= hi for lo, hi in self.customer_fault_codes)

    def as_json(self) -> dict[str, Any]:
        """Canonical JSON-serialisable form of the parameters (spec key names).

        A 24/7 profile (:attr:`always_planned`) has neither ``planned_windows`` nor
        ``shifts``, so :func:`parse_profile` reads it back as 24/7 (same hash).
        """
        doc = self._json()
        if self.always_planned:
            del doc["planned_windows"], doc["shifts"]
        return doc

    @property
    def calendar(self) -> str:
        """What the machine's planned time is, in words (``check-config``, status)."""
        if self.always_planned:
            return "24/7 (no shifts or planned_windows)"
        parts = []
        if self.shifts:
            parts.append(f"{len(self.shifts)} shift(s)")
        if self.planned_windows:
            parts.append(f"{len(self.planned_windows)} planned window(s)")
        return " + ".join(parts) if parts else "nothing planned (planned_windows = [])"

    def _json(self) -> dict[str, Any]:
        return {
            "ideal_cycle_time_s": self.ideal_cycle_time_s,
            "micro_stop_threshold_s": self.micro_stop_threshold_s,
            "max_gap_s": self.max_gap_s,
            "counter_bits": self.counter_bits,
            "wrap_rate_factor": self.wrap_rate_factor,
            "min_coverage": self.min_coverage,
            "clock_step_tolerance_s": self.clock_step_tolerance_s,
            "timezone": self.timezone,
            "planned_windows": [_interval_json(w) for w in self.planned_windows],
            "shifts": [
                {
                    "name": s.name,
                    "start": f"{s.start_min // 60:02d}:{s.start_min % 60:02d}",
                    "end": f"{s.end_min // 60:02d}:{s.end_min % 60:02d}",
                    "days": [d.value for d in Weekday if d.index in s.days],
                }
                for s in self.shifts
            ],
            "exclusions": [_interval_json(w) for w in self.exclusions],
            "sla": {"customer_fault_codes": [list(r) for r in self.customer_fault_codes]},
        }


def _interval_json(w: UtcInterval) -> dict[str, str]:
    out = {"start": format_instant(w.start_ms), "end": format_instant(w.end_ms)}
    if w.reason:
        out["reason"] = w.reason
    return out


@functools.lru_cache(maxsize=64)
def profile_hash(profile: KpiProfile) -> str:
    """SHA-256 (hex) of the canonical JSON of the profile parameters and the spec version."""
    doc = {"spec_version": SPEC_VERSION, "profile": profile.as_json()}
    import hashlib  # here: loading a configuration need not map OpenSSL (3.5 MB RSS)

    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# -- parsing -----------------------------------------------------------------


def _instant(table: Table, key: str) -> int | None:
    """A UTC instant given as ISO text with offset/Z or a TOML offset datetime."""
    value = table.get_raw(key)
    expected = "an ISO 8601 UTC instant such as '2024-05-13T06:00:00Z'"
    if value is None:
        table.error(key, f"missing, expected {expected}")
        return None
    try:
        if isinstance(value, dt.datetime):
            return datetime_to_ms(value)
        if isinstance(value, str):
            return parse_instant(value)
    except ValueError:
        pass
    table.error(key, f"expected {expected}, got {describe(value)}")
    return None


def _intervals(table: Table, key: str, *, with_reason: bool) -> tuple[UtcInterval, ...]:
    out: list[UtcInterval] = []
    for item in table.array_of_tables(key):
        start = _instant(item, "start")
        end = _instant(item, "end")
        reason = item.get_str("reason", "", nonempty=False) if with_reason else ""
        item.finish()
        if start is None or end is None:
            continue
        if end <= start:
            item.error("end", "must be after start")
            continue
        out.append(UtcInterval(start_ms=start, end_ms=end, reason=reason))
    return tuple(out)


def _hhmm(table: Table, key: str) -> int:
    text = table.get_str(key, expected="a local time 'HH:MM' (00:00 to 23:59)")
    match = _HHMM.match(text)
    if text and match is None:
        table.error(key, f"expected a local time 'HH:MM' (00:00 to 23:59), got {describe(text)}")
        return 0
    return int(match.group(1)) * 60 + int(match.group(2)) if match else 0


def _weekday(value: Any) -> int | None:
    names = [d.value for d in Weekday]
    return names.index(value) if isinstance(value, str) and value in names else None


def _shifts(table: Table) -> tuple[Shift, ...]:
    out: list[Shift] = []
    for i, item in enumerate(table.array_of_tables("shifts")):
        name = item.get_str("name", chr(ord("A") + i) if i < 26 else f"S{i + 1}")
        if name and not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            item.error("name", "expected letters, digits, '_' or '-'")
        start = _hhmm(item, "start")
        end = _hhmm(item, "end")
        days = item.get_list(
            "days", _weekday, list(range(7)), expected="weekday names 'mon'..'sun'"
        )
        if item.data.get("days") == []:
            item.error("days", "expected at least one weekday")
        item.finish()
        out.append(Shift(name=name, start_min=start, end_min=end, days=frozenset(days)))
    names = [s.name for s in out]
    for name in {n for n in names if names.count(n) > 1}:
        table.error("shifts", f"duplicate shift name {name!r}")
    return tuple(out)


def _code_ranges(table: Table) -> tuple[tuple[int, int], ...]:
    sla = table.table("sla")
    if sla is None:
        return ()

    def item(raw: Any) -> tuple[int, int] | None:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return (raw, raw)
        if (
            isinstance(raw, list)
            and len(raw) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in raw)
            and raw[0] <= raw[1]
        ):
            return (raw[0], raw[1])
        return None

    ranges = sla.get_list(
        "customer_fault_codes",
        item,
        [],
        expected="a fault code or an inclusive [low, high] pair with low <= high",
    )
    sla.finish()
    return tuple(ranges)


def _zone_name(table: Table) -> str:
    def check(name: str) -> str | None:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
            return f"expected an IANA time zone such as 'Europe/Paris', got {name!r}"
        return None

    name = table.get_str("timezone", "UTC", check=check)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return "UTC"
    return name


def parse_profile(table: Table) -> KpiProfile:
    """Read a KPI profile table, recording every problem in ``table.issues``.

    The caller raises with ``table.issues.raise_if_any()``; when issues were
    recorded the returned profile holds placeholders and must not be used.
    """
    ict = table.get_float("ideal_cycle_time_s", positive=True)
    profile = KpiProfile(
        ideal_cycle_time_s=ict if ict > 0 else 1.0,
        micro_stop_threshold_s=table.get_float("micro_stop_threshold_s", 120.0, min=0),
        max_gap_s=table.get_float("max_gap_s", 3600.0, positive=True),
        counter_bits=table.get_int("counter_bits", 32, min=1, max=64),
        wrap_rate_factor=table.get_float("wrap_rate_factor", 2.0, positive=True),
        min_coverage=table.get_float("min_coverage", 0.95, min=0, max=1),
        clock_step_tolerance_s=table.get_float("clock_step_tolerance_s", 2.0, min=0),
        timezone=_zone_name(table),
        planned_windows=_intervals(table, "planned_windows", with_reason=False),
        shifts=_shifts(table),
        exclusions=_intervals(table, "exclusions", with_reason=True),
        customer_fault_codes=_code_ranges(table),
        always_planned=not (table.has("planned_windows") or table.has("shifts")),
    )
    table.finish()
    return profile


def parse_shifts(table: Table) -> tuple[Shift, ...]:
    """The ``shifts`` array of ``table`` (shared by KPI profiles and contract calendars)."""
    return _shifts(table)


def parse_intervals(table: Table, key: str, *, with_reason: bool) -> tuple[UtcInterval, ...]:
    """An array of UTC ``{start, end}`` intervals (shared with contract exclusions)."""
    return _intervals(table, key, with_reason=with_reason)
