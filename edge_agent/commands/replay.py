"""``edge-agent replay``: recompute KPI records, or a contract's compliance, from samples.

KPI records: a KPI profile (the kpi keys at the top level of a TOML file), a
samples JSONL file in arrival order and one or more ``--window NAME=START/END``;
each window's record (spec §3.12) is printed as a table or, with ``--json``, as
one JSON object keyed by window name.

A contract: ``--config agent.toml --contract NAME`` (the agent's own file: the
machines' KPI profiles and the contract), ``--samples MACHINE=SAMPLES.jsonl`` per
machine, ``--at ISO`` and optionally ``--final`` (the closed period's record as the
agent publishes it) and ``--answers STOPS.jsonl`` (stop events with
``acknowledged_at`` / ``arrived_at``, as published). The output carries the
contract hash and the profile hashes to compare with the agent's records.

Bad input exits 2 with a message naming the file, key or line. It only reads
files; nothing is written.
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

A contract's compliance (the agent's own config holds profiles and contract):
  edge-agent replay --config agent.toml --contract line2-service \
      --samples press1=press1.jsonl --samples press2=press2.jsonl \
      --answers stops.jsonl --at 2026-03-15T00:00:00Z --final --json
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
    parser.add_argument("--kpi", metavar="PROFILE.toml", help="KPI profile (TOML)")
    parser.add_argument(
        "--samples",
        action="append",
        required=True,
        metavar="[MACHINE=]SAMPLES.jsonl",
        help="one sample per line, arrival order (with --contract: MACHINE=FILE per machine)",
    )
    parser.add_argument(
        "--window",
        action="append",
        metavar="NAME=START/END",
        help="report window (repeatable; with --kpi)",
    )
    parser.add_argument("--config", metavar="agent.toml", help="with --contract: the agent config")
    parser.add_argument("--contract", metavar="NAME", help="recompute this contract's compliance")
    parser.add_argument("--at", metavar="ISO", help="with --contract: the evaluation instant")
    parser.add_argument(
        "--final", action="store_true", help="with --contract: the record of the closed period"
    )
    parser.add_argument(
        "--answers", metavar="STOPS.jsonl", help="with --contract: stop events with their answers"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def _table(records: dict[str, KpiRecord]) -> str:
    docs = {name: rec.as_dict() for name, rec in records.items()}
    for doc in docs.values():
        doc["profile_hash"] = doc["profile_hash"][:12] + "…"
    keys = [k for k in next(iter(docs.values())) if k not in ("window", "window_kind")]
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
    if args.contract is not None:
        return _run_contract(args)
    from edge_agent.kpi.replay import (
        ReplayInputError,
        compute_records,
        load_profile,
        load_samples,
        parse_window_arg,
    )

    if args.kpi is None or not args.window or len(args.samples) != 1:
        print(
            "error: give --kpi PROFILE.toml, one --samples FILE and --window NAME=START/END "
            "(or --config FILE --contract NAME)",
            file=sys.stderr,
        )
        return EXIT_INPUT
    try:
        profile = load_profile(args.kpi)
        windows = [parse_window_arg(w, profile) for w in args.window]
        names = [w.name for w in windows]
        samples = load_samples(args.samples[0])
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
            doc.pop("window")
            out[name] = doc
        print(json.dumps(out, indent=1, sort_keys=False))
    else:
        print(_table(records))
    return EXIT_OK


def _run_contract(args: argparse.Namespace) -> int:
    """``replay --contract``: a contract's status or period record from samples."""
    from edge_agent.config import load_config
    from edge_agent.contracts.replay import replay_contract
    from edge_agent.contracts.text import render
    from edge_agent.kpi.replay import ReplayInputError, load_samples
    from edge_agent.kpi.timeutil import parse_instant

    if args.config is None or args.at is None:
        print("error: --contract needs --config agent.toml and --at ISO", file=sys.stderr)
        return EXIT_INPUT
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        sep = " " if len(exc.issues) == 1 else "\n"
        print(f"error: invalid agent config:{sep}{exc}", file=sys.stderr)
        return EXIT_INPUT
    contract = config.contracts.get(args.contract)
    if contract is None:
        known = ", ".join(sorted(config.contracts)) or "none"
        print(f"error: --contract: no contract {args.contract!r} ({known})", file=sys.stderr)
        return EXIT_INPUT
    try:
        at_ms = parse_instant(args.at)
    except ValueError:
        print(f"error: --at {args.at!r}: expected an ISO 8601 instant with Z", file=sys.stderr)
        return EXIT_INPUT
    samples = {}
    try:
        for item in args.samples:
            machine, sep, path = item.partition("=")
            if not sep or machine not in contract.machines:
                print(
                    f"error: --samples {item!r}: expected MACHINE=FILE with MACHINE one of "
                    f"{', '.join(contract.machines)}",
                    file=sys.stderr,
                )
                return EXIT_INPUT
            samples[machine] = load_samples(path)
        answers = _load_answers(args.answers) if args.answers else {}
    except ReplayInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    try:
        doc = replay_contract(
            contract,
            {name: m.kpi for name, m in config.machines.items()},
            samples,
            at_ms=at_ms,
            final=args.final,
            allowed_lateness_s=config.reporting.allowed_lateness_s,
            answers=answers,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    print(json.dumps(doc, indent=1) if args.json else render(doc))
    return EXIT_OK


def _load_answers(path: str) -> dict[str, tuple[int | None, int | None]]:
    """``event_id -> (acknowledged_ms, arrived_ms)`` from stop events (JSONL, as published)."""
    from edge_agent.kpi.replay import ReplayInputError
    from edge_agent.kpi.timeutil import parse_instant

    out: dict[str, tuple[int | None, int | None]] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                    doc = doc.get("data", doc)  # a whole envelope, or its data
                    ack, arrive = doc.get("acknowledged_at"), doc.get("arrived_at")
                    out[str(doc["event_id"])] = (
                        None if ack is None else parse_instant(ack),
                        None if arrive is None else parse_instant(arrive),
                    )
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise ReplayInputError(f"{path}: line {number}: {exc}") from None
    except OSError as exc:
        raise ReplayInputError(f"{path}: cannot read answers: {exc}") from None
    return out
