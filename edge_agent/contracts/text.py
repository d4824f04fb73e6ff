"""Contract status as text for people: durations, values in their units, the status table.

``edge-agent contract status`` prints one table per contract, one row per level of
each term: term, level, threshold, so far, state, budget left, forecast. Values are
shown in the term's unit (ratios as percentages, times as durations, throughput
in parts/h), budgets as "7 h 12 min" or "1 late response". Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

HEADER = ("term", "level", "target", "so far", "state", "budget left", "forecast")


def format_duration(seconds: float) -> str:
    """``26,748 s`` → ``7 h 25 min 48 s``; under a minute in seconds; negative with a minus."""
    sign = "-" if seconds < 0 else ""
    total = round(abs(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{n} {unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")) if n
    ]
    if days:  # a month-long budget does not need seconds
        parts = parts[:2]
    return sign + (" ".join(parts) if parts else "0 s")


def format_value(value: float | None, unit: str) -> str:
    """A KPI value in its unit: ``98.33 %``, ``45 min``, ``1,518.8 parts/h``; ``-`` if none."""
    if value is None:
        return "-"
    if unit == "ratio":
        return f"{value * 100:.2f} %"
    if unit == "s":
        return format_duration(value) if value >= 60 else f"{value:g} s"
    return f"{value:,.1f} {unit}"


def format_budget(budget: float | None, budget_unit: str | None) -> str:
    """What is left before a level is missed, in words."""
    if budget is None or budget_unit is None:
        return "-"
    if budget_unit == "responses":
        n = int(budget)
        if n < 0:
            return f"{-n} late response{'s' if n < -1 else ''} too many"
        return f"{n} late response{'' if n == 1 else 's'}"
    return format_duration(budget) if budget >= 0 else f"over by {format_duration(-budget)}"


def rows(status: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The table rows of one contract status (one per level of each term)."""
    out: list[tuple[str, ...]] = []
    for term in status.get("terms", []):
        unit = term["unit"]
        name = term["term"]
        if term.get("statistic"):
            name += f" ({term['statistic']})"
        for level in term["levels"]:
            out.append(
                (
                    name,
                    level["level"],
                    f"{term['direction']} {format_value(level['threshold'], unit)}",
                    format_value(term["so_far"], unit),
                    level["state"],
                    format_budget(level["budget"], term["budget_unit"]),
                    format_value(term["forecast"], unit),
                )
            )
            name = ""
    return out


def table(lines: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in lines
    )


def render(status: Mapping[str, Any]) -> str:
    """One contract's status: a title line, coverage and remaining time, the table."""
    coverage = status.get("data_coverage")
    machines = len(status.get("profile_hashes", {}))
    summed = f" (summed over {machines} machines)" if machines > 1 else ""
    head = (
        f"{status['contract']}  {status['period']}  at {status['at']}"
        f"{'  (final)' if status.get('final') else ''}\n"
        f"data coverage {format_value(coverage, 'ratio')}, "
        f"service time left {format_duration(status.get('remaining_service_s', 0.0))}{summed}"
    )
    body = rows(status)
    if not body:
        return head + "\n(no terms: period records only)"
    return head + "\n" + table([HEADER, *body])
