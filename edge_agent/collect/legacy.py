"""Older ``data`` shapes of KPI records, stop events and health, upgraded to the decided ones.

Agents released before the payload decisions of this round publish KPI records with
``name`` instead of ``window`` (and no ``window_kind``), and stop events with UNIX-second
instants, ``class``/``fault`` instead of ``category``/``code``, ``duration_s`` 0.0 while
open and no ``event_id``. A fleet upgrades gradually, so the collector accepts both: an
old shape is rewritten to the decided one (the mapping below, nothing guessed beyond it)
*before* schema validation, the stored row says it was upgraded, and the raw message is
kept as received. Anything that is neither shape goes to quarantine as usual.

Mapping:

* kpi: ``window = name``; ``window_kind`` = the part of the window before the first ':'.
* health: the ``errors`` slot (always null before the event catalogue) -> ``events`` null.
* stop: ``start``/``end`` numbers -> RFC 3339 UTC with milliseconds; ``category = class``;
  ``code = fault`` (0 = no fault -> null); ``fault_name`` null when absent; ``duration_s``
  null while open (``end`` null); ``event_id = "<machine>@<start>"`` (machine + start
  instant, the identity the decisions define).

Pure code, no I/O.
"""

from __future__ import annotations

import math
from typing import Any

from edge_agent.collect.timefmt import from_unix


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def upgrade(kind: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """The decided shape of an old-shape ``data``, or None when it is not an old shape."""
    if kind == "kpi":
        return _kpi(data)
    if kind == "stop":
        return _stop(data)
    if kind == "health" and "errors" in data and "events" not in data:
        out = {k: v for k, v in data.items() if k != "errors"}
        out["events"] = None  # the old slot carried nothing (always null)
        return out
    return None


def _kpi(data: dict[str, Any]) -> dict[str, Any] | None:
    window = data.get("window")
    if window is None and isinstance(data.get("name"), str):
        out = {k: v for k, v in data.items() if k != "name"}
        out["window"] = window = data["name"]
    elif isinstance(window, str) and "window_kind" not in data:
        out = dict(data)
    else:
        return None
    if "window_kind" not in out and isinstance(window, str) and ":" in window:
        out["window_kind"] = window.split(":", 1)[0]
    return out


def _stop(data: dict[str, Any]) -> dict[str, Any] | None:
    start, end = data.get("start"), data.get("end")
    old_times = _number(start) and (end is None or _number(end))
    old_names = "class" in data or "fault" in data or "event_id" not in data
    if not (old_times or old_names):
        return None
    out = {k: v for k, v in data.items() if k not in ("class", "fault")}
    try:
        if _number(start):
            out["start"] = from_unix(float(start))  # type: ignore[arg-type]
        if _number(end):
            out["end"] = from_unix(float(end))  # type: ignore[arg-type]
    except (OverflowError, OSError, ValueError):
        return None  # not a plausible instant: let validation reject the original
    if "class" in data and "category" not in data:
        out["category"] = data["class"]
    if "fault" in data and "code" not in data:
        fault = data["fault"]
        out["code"] = None if fault in (0, "0", None) else fault
    out.setdefault("fault_name", None)
    if out.get("end") is None:
        out["duration_s"] = None
    if "event_id" not in out and isinstance(out.get("machine"), str) and out.get("start"):
        out["event_id"] = f"{out['machine']}@{out['start']}"
    return out
