"""What the agent tells a technician: log lines for stops and KPI problems, and flag texts.

The runtime calls :func:`log_stop` for every stop-event update and
:func:`log_kpi_flags` for every day record; the uplink and ``run_link`` use
:func:`duration` for their lines; ``edge-agent status`` shows
:data:`FLAGS` next to the figures they qualify. Every line is listed in
``docs/logs.md`` (a test checks the catalogue against the code).

Rules, from the journal reader's side (``journalctl -u edge-agent``): one
line when a condition starts and one when it ends, never one per retry or
per sample; a capitalised sentence first, then ``key=value`` fields with
fixed names; durations as ``3m05s``, never raw seconds.

State: :func:`log_stop` remembers, per machine, the start of the stop it
already announced (one entry per machine at most, removed when the stop
ends), so a stop is announced once however many updates it gets.
:func:`log_kpi_flags` compares with the previous record the caller holds and
remembers, per machine, how many lines each flag got in the current window
(one window per machine; a flag that flaps gets at most three).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

__all__ = ["FLAGS", "FlagText", "duration", "flag_text", "log_kpi_flags", "log_stop"]

log = logging.getLogger("edge_agent.machines")


@dataclass(frozen=True, slots=True)
class FlagText:
    """How a KPI flag is shown: the figure it qualifies, a short label and what to do."""

    column: str
    label: str
    meaning: str


#: KPI record flags (kpi-spec §3.11) in words. ``column`` is the status column they qualify.
FLAGS: dict[str, FlagText] = {
    "performance_capped": FlagText(
        "PERF",
        "capped",
        "more parts than the ideal cycle time allows (performance > 100 %, OEE uses 100 %): "
        "check [machines.<name>.kpi] ideal_cycle_time_s and the part counters",
    ),
    "low_coverage": FlagText(
        "AVAIL",
        "low coverage",
        "too much of the planned time has no data (comms down, agent stopped): "
        "the ratios may not be representative",
    ),
    "no_planned_time": FlagText(
        "AVAIL", "no plan", "no planned production time in the window (shifts, exclusions)"
    ),
    "out_of_plan_production": FlagText(
        "QUAL", "out of plan", "parts were counted outside planned time (check the shifts)"
    ),
    "no_counts_while_running": FlagText(
        "PERF",
        "no counts",
        "the machine ran but no part was counted: check the total counter tag",
    ),
    "counts_span_unknown": FlagText(
        "PERF", "counts across gap", "parts counted across a data gap could not be placed in time"
    ),
    "count_inconsistent": FlagText(
        "QUAL", "good > total", "more good parts than total parts: check the counter tags"
    ),
    "counter_wrap": FlagText(
        "QUAL", "counter wrapped", "a part counter wrapped around its maximum"
    ),
    "counter_reset": FlagText(
        "QUAL", "counter reset", "a part counter was reset (PLC restart or operator)"
    ),
    "counter_anomaly": FlagText(
        "QUAL",
        "counter jump",
        "a part counter jumped implausibly and was re-baselined (the jump is not counted)",
    ),
    "clock_step": FlagText(
        "AVAIL", "clock step", "the system clock was stepped (NTP) while running; time re-anchored"
    ),
    "conflicting_duplicate": FlagText(
        "AVAIL", "duplicate samples", "two different samples arrived for the same instant"
    ),
    "calendar_24_7": FlagText(
        "AVAIL",
        "24/7",
        "no shifts or planned_windows configured: planned around the clock (kpi-spec 3.4); "
        "add [[machines.<name>.kpi.shifts]] to plan less",
    ),
}

#: Flags that state how a record was computed, not a problem: shown, never logged.
INFO_FLAGS = frozenset({"calendar_24_7"})


def flag_text(flag: str) -> FlagText:
    """The text of a flag; an unknown flag (a newer agent) is shown by its name."""
    return FLAGS.get(flag) or FlagText("FLAGS", flag.replace("_", " "), flag)


def duration(seconds: float | None) -> str:
    """A duration as a technician reads it: ``<1s``, ``42s``, ``3m05s``, ``2h03m``, ``4d02h``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    s = int(seconds)
    if seconds < 1:
        return "<1s"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _clock(ts: Any) -> str:
    if not isinstance(ts, int | float) or not math.isfinite(ts):
        return "-"
    return datetime.fromtimestamp(float(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fault(data: Mapping[str, Any]) -> str:
    code = data.get("code")
    if not code:
        return "none"
    name = data.get("fault_name")
    return f"{code} ({name})" if name else str(code)


# machine -> start of the stop already announced (open stops only).
_announced: dict[str, str] = {}


def log_stop(data: Mapping[str, Any]) -> None:
    """Log a stop-event update (the ``stop`` message payload) as its start or end line.

    A stop is announced once it is longer than a micro-stop (its category is no
    longer ``pending``), with its start time; its end gets one line with the
    duration, class and fault. Micro-stops are counted in the KPIs, not logged
    at info level (a machine may have hundreds a day).
    """
    machine = str(data.get("machine", "?"))
    start = str(data.get("start"))
    cls = data.get("category")
    if data.get("end") is None:
        if cls in ("pending", "micro") or _announced.get(machine) == start:
            return
        _announced[machine] = start
        log.info(
            "Machine stopped machine=%s since=%s fault=%s",
            machine,
            start.replace(".000Z", "Z"),
            _fault(data),
        )
        return
    _announced.pop(machine, None)
    level = logging.DEBUG if cls in ("micro", "unplanned") else logging.INFO
    log.log(
        level,
        "Machine running again machine=%s stopped_for=%s class=%s fault=%s",
        machine,
        duration(data.get("duration_s")),
        cls,
        _fault(data),
    )


# machine -> (window, flag -> lines told about it in that window): bounds the lines of a
# flag that comes and goes with every report (seen: ~5 lines a second on a gateway).
_FLAGS_TOLD: dict[str, tuple[str, dict[str, int]]] = {}
_FLAPPING = " (it comes and goes; no more lines about it in this window)"


def log_kpi_flags(
    machine: str, previous: Mapping[str, Any] | None, record: Mapping[str, Any]
) -> None:
    """Log KPI problems (record flags) of a machine when they appear and when they clear.

    ``previous`` is the machine's last record of the same kind (the caller keeps
    it). Within one window a flag is logged when it appears and when it goes; a
    new window logs the flags it starts with, so a problem that lasts is
    repeated once per window (once a day for day records), never per report.
    A flag that comes and goes gets at most three lines per window: appeared,
    cleared, and appeared again with a note that nothing more is said about it
    until the next window. Final records and revisions are not logged again.
    """
    if record.get("final") or record.get("revision"):
        return  # a closed window or a late revision: its flags were told while it was live
    now_flags = set(record.get("flags") or ()) - INFO_FLAGS
    same_window = previous is not None and previous.get("window") == record.get("window")
    before = set(previous.get("flags") or ()) - INFO_FLAGS if same_window and previous else set()
    window = str(record.get("window", "?"))
    told_window, told = _FLAGS_TOLD.get(machine, ("", {}))
    if told_window != window:
        told = {}
        _FLAGS_TOLD[machine] = (window, told)
    for flag in sorted(now_flags - before):
        lines = told.get(flag, 0)
        if lines in (0, 2):
            told[flag] = lines + 1
            log.warning(
                "KPI problem machine=%s window=%s flag=%s: %s",
                machine,
                window,
                flag,
                flag_text(flag).meaning + (_FLAPPING if lines else ""),
            )
    if same_window:
        for flag in sorted(before - now_flags):
            if told.get(flag, 0) == 1:
                told[flag] = 2
                log.info("KPI problem cleared machine=%s window=%s flag=%s", machine, window, flag)
