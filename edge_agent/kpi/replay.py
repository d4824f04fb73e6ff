"""Batch evaluation and the file formats of ``edge-agent replay``.

:func:`compute_records` evaluates a list of samples (arrival order) over named
windows in one pass. The loaders read a replay ``PROFILE.toml`` (the kpi keys
at top level), a samples JSONL file and ``NAME=START/END`` window arguments,
raising :class:`ReplayInputError` with a message that names the file, key or
line. Loading is the only I/O here; evaluation is pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from edge_agent.configkit import Issues, Table, load_toml
from edge_agent.errors import ConfigError
from edge_agent.kpi.calendar import Planner, ReportWindow
from edge_agent.kpi.engine import Span, evaluate
from edge_agent.kpi.prepare import prepare
from edge_agent.kpi.profile import KpiProfile, parse_profile
from edge_agent.kpi.record import KpiRecord
from edge_agent.kpi.sample import Sample, sample_from_json
from edge_agent.kpi.timeutil import MS_PER_S, parse_instant


class ReplayInputError(Exception):
    """Bad replay input: the message names the file, key or line."""


WindowSpec = ReportWindow | tuple[str, float, float]


def to_spans(windows: Iterable[WindowSpec]) -> list[Span]:
    """Convert ``(name, start, end)`` windows in epoch seconds to ms spans."""
    return [Span(n, round(s * MS_PER_S), round(e * MS_PER_S)) for n, s, e in windows]


def compute_records(
    profile: KpiProfile,
    samples: Sequence[Sample],
    windows: Iterable[WindowSpec],
    *,
    so_far: bool = False,
    now: float | None = None,
) -> dict[str, KpiRecord]:
    """Final records of every window for samples given in arrival order.

    Args:
        profile: the machine's calculation profile.
        samples: samples in arrival order (they are corrected, sorted, de-duplicated).
        windows: ``(name, start, end)`` with UTC epoch seconds, half-open.
        so_far: "so far" records of windows cut at their ``end`` (an open stop below
            the micro-stop threshold is ``pending_stop_s``; ``final`` is false).
        now: data known up to this instant (epoch s): the last state holds no further.
            Default: the latest window end for so-far records, else unbounded.
    """
    points, markers = prepare(profile, samples)
    spans = to_spans(windows)
    until = None if now is None else round(now * MS_PER_S)
    records = evaluate(
        profile, points, markers, spans, planner=Planner(profile), so_far=so_far, until=until
    )
    return {k: v.with_meta(final=not so_far) for k, v in records.items()}


def load_profile(path: str | Path) -> KpiProfile:
    """Read and validate a replay PROFILE.toml.

    Raises:
        ConfigError: with every issue, each naming the file and key path.
    """
    issues = Issues(str(path))
    data = load_toml(path, issues)
    issues.raise_if_any()
    profile = parse_profile(Table(data, "", issues))
    issues.raise_if_any()
    return profile


def load_samples(path: str | Path) -> list[Sample]:
    """Read a samples JSONL file (one object per line, blank lines ignored)."""
    out: list[Sample] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    out.append(sample_from_json(json.loads(line)))
                except (ValueError, TypeError) as exc:
                    raise ReplayInputError(f"{path}: line {number}: {exc}") from None
    except FileNotFoundError:
        raise ReplayInputError(f"{path}: file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ReplayInputError(f"{path}: cannot read samples: {exc}") from None
    return out


def parse_window_arg(text: str, profile: KpiProfile) -> ReportWindow:
    """Parse ``NAME=START/END``; instants without offset are wall time in the profile zone."""
    name, sep, rest = text.partition("=")
    start_text, slash, end_text = rest.partition("/")
    expected = "expected NAME=START/END, e.g. S1=2024-05-13T06:00:00Z/2024-05-13T14:00:00Z"
    if not sep or not slash or not name.strip():
        raise ReplayInputError(f"--window {text!r}: {expected}")
    try:
        start = parse_instant(start_text, profile.zone)
        end = parse_instant(end_text, profile.zone)
    except ValueError:
        raise ReplayInputError(f"--window {text!r}: invalid ISO 8601 instant; {expected}") from None
    if end <= start:
        raise ReplayInputError(f"--window {text!r}: END must be after START")
    return ReportWindow(name.strip(), start / MS_PER_S, end / MS_PER_S)


__all__ = [
    "ConfigError",
    "ReplayInputError",
    "compute_records",
    "load_profile",
    "load_samples",
    "parse_window_arg",
    "to_spans",
]
