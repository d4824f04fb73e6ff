"""``edge-agent replay``: recompute KPI records from recorded samples.

Reads a KPI profile (the kpi keys at the top level of a TOML file), a samples
JSONL file in arrival order and one or more ``--window NAME=START/END``, and
prints each window's record (spec §3.12) as a table or, with ``--json``, as one
JSON object keyed by window name. Bad input exits 2 with a message naming the
file, key or line. It only reads files; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edge_agent.errors import ConfigError
from edge_agent.kpi.record import KpiRecord

EXIT_OK = 0
EXIT_INPUT = 2

EPILOG = """\
Example:
  edge-agent replay --kpi press1.toml --samples press1.jsonl \\
      --window S1=2024-05-13T06:00:00Z/2024-05-13T14:00:00Z --json

PROFILE.toml holds the kpi keys at top level, e.g.:
  ideal_cycle_time_s = 2.0
  timezone = "Europe/Paris"
  [[shifts]]
  name = "N"
  start = "22:00"
  end = "06:00"

START/END are ISO 8601 instants; without an offset or 'Z' they are wall time
in the profile's timezone (fold=0). Windows are half-open [START, END).
"""


def register(subparsers: Any) -> None:
    """Add the ``replay`` sub-command."""
    parser = subparsers.add_parser(
        "replay",
        help="recompute KPI records from a samples file",
        description="Recompute KPI records (spec §3.12) for report windows from recorded samples.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kpi", required=True, metavar="PROFILE.toml", help="KPI profile (TOML)")
    parser.add_argument(
        "--samples",
        required=True,
        metavar="SAMPLES.jsonl",
        help="one sample per line, arrival order",
    )
    parser.add_argument(
        "--window",
        action="append",
        required=True,
        metavar="NAME=START/END",
        help="report window (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object keyed by window")
    parser.set_defaults(func=run)


def _table(records: dict[str, KpiRecord]) -> str:
    docs = {name: rec.as_dict() for name, rec in records.items()}
    for doc in docs.values():
        doc["profile_hash"] = doc["profile_hash"][:12] + "…"
    keys = [k for k in next(iter(docs.values())) if k not in ("name",)]
    width = max(len(k) for k in keys)
    lines = ["field".ljust(width) + "  " + "  ".join(n.rjust(14) for n in docs)]

    def cell(value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, float):
            return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.0f}"
        if isinstance(value, dict):
            return ",".join(f"{k}:{v:g}" for k, v in value.items()) or "-"
        if isinstance(value, list):
            return ",".join(value) or "-"
        return str(value)

    for key in keys:
        lines.append(
            key.ljust(width) + "  " + "  ".join(cell(d[key]).rjust(14) for d in docs.values())
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Execute ``replay``; returns the exit code."""
    from edge_agent.kpi.replay import (
        ReplayInputError,
        compute_records,
        load_profile,
        load_samples,
        parse_window_arg,
    )

    try:
        profile = load_profile(args.kpi)
        windows = [parse_window_arg(w, profile) for w in args.window]
        names = [w.name for w in windows]
        samples = load_samples(args.samples)
    except ConfigError as exc:
        sep = " " if len(exc.issues) == 1 else "\n"
        print(f"error: invalid KPI profile:{sep}{exc}", file=sys.stderr)
        return EXIT_INPUT
    except ReplayInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if len(set(names)) != len(names):
        print("error: --window: duplicate window names", file=sys.stderr)
        return EXIT_INPUT
    records = compute_records(profile, samples, windows)
    if args.json:
        out = {}
        for name, rec in records.items():
            doc = rec.as_dict()
            doc.pop("name")
            out[name] = doc
        print(json.dumps(out, indent=1, sort_keys=False))
    else:
        print(_table(records))
    return EXIT_OK
