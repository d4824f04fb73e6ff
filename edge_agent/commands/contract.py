"""``edge-agent contract status [NAME]`` and ``edge-agent ack STOP_ID``: contracts on the gateway.

``contract status`` reads the contracts' latest status from the agent's
``status.json`` (no network, works after the agent stopped) and prints, per
contract, one row per level of each term: target, so far, state, budget left,
forecast; ``--json`` prints the status records themselves.

``ack`` answers a stop event (acknowledged, or ``--arrive``: technician on site) for
the response-time terms. It writes a command file into the agent's
``<state_dir>/commands/`` (only who may write the agent's state directory can answer)
and waits for the agent's verdict; the agent checks it like an MQTT command and
publishes the stop event's revision. Exit 0 when accepted, 1 when rejected or when
the agent did not answer (not running: the file is taken back).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from edge_agent.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, UsageError
from edge_agent.commands.status import resolve_state_dir
from edge_agent.errors import ConfigError
from edge_agent.kpi.timeutil import format_instant, parse_instant

DEFAULT_TIMEOUT_S = 10.0


def _location(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help="agent config: its [agent].state_dir is used (default: the installed one)",
    )
    parser.add_argument("--state-dir", type=Path, help="the agent's state directory")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``contract`` and ``ack`` sub-commands."""
    contract = sub.add_parser(
        "contract",
        help="outcome contracts: compliance so far, budget, forecast",
        description="Outcome contracts ([contracts.NAME]) of the running agent.",
        epilog="Examples:\n  edge-agent contract status\n  edge-agent contract status line2 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = contract.add_subparsers(dest="verb", metavar="VERB", required=True)
    status = verbs.add_parser(
        "status",
        help="each term: target, so far, state, budget left, forecast",
        description="The contracts' latest status, from the agent's status.json (no network).",
        epilog="Exit codes: 0 shown, 1 no status (agent not running?), 2 unknown contract.\n"
        "Examples:\n  edge-agent contract status\n  edge-agent contract status line2-service\n"
        "  edge-agent contract status --state-dir /var/lib/edge-agent --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("name", nargs="?", metavar="NAME", help="one contract (default: all)")
    _location(status)
    status.add_argument("--json", action="store_true", help="print the status records as JSON")
    status.set_defaults(func=run_status)
    ack = sub.add_parser(
        "ack",
        help="acknowledge a stop event (or --arrive: technician on site)",
        description="Answer a stop event for the contracts' response time: the agent checks "
        "it and publishes the stop event with acknowledged_at / arrived_at.",
        epilog="Exit codes: 0 accepted, 1 rejected or no answer from the agent, 2 usage.\n"
        "Examples:\n  edge-agent ack press1@2026-11-26T08:14:05Z\n"
        "  edge-agent ack press1@2026-11-26T08:14:05Z --arrive\n"
        "  edge-agent ack press1@2026-11-26T08:14:05Z --at 2026-11-26T08:40:00Z",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ack.add_argument("event_id", metavar="STOP_ID", help="the stop event's event_id")
    ack.add_argument("--arrive", action="store_true", help="technician arrived (not just ack)")
    ack.add_argument("--at", metavar="ISO", help="when (ISO 8601 with Z/offset; default: now)")
    _location(ack)
    ack.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"wait this long for the agent (default {DEFAULT_TIMEOUT_S:g} s)",
    )
    ack.set_defaults(func=run_ack)


def _state_dir(args: argparse.Namespace) -> Path:
    if args.config is not None and args.state_dir is not None:
        raise UsageError("give -c FILE or --state-dir, not both")
    return resolve_state_dir(state_dir=args.state_dir, config=args.config)


def run_status(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Execute ``edge-agent contract status``."""
    # Imported here: every command module is imported to build the parser (`run` too).
    from edge_agent.contracts.text import render
    from edge_agent.status_view import STATUS_FILE, SnapshotError, load_snapshot

    stream = sys.stdout if out is None else out
    try:
        state_dir = _state_dir(args)
        snapshot = load_snapshot(state_dir / STATUS_FILE)
    except ConfigError as exc:
        print(f"edge-agent contract status: cannot use the config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SnapshotError as exc:
        print(f"edge-agent contract status: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    contracts: dict[str, Any] = snapshot.get("contracts") or {}
    if args.name is not None:
        if args.name not in contracts:
            known = ", ".join(sorted(contracts)) or "none"
            print(
                f"edge-agent contract status: no contract {args.name!r} (contracts: {known})",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        contracts = {args.name: contracts[args.name]}
    if args.json:
        stream.write(json.dumps(contracts, indent=2, sort_keys=True) + "\n")
    elif not contracts:
        stream.write("No contract status (none configured, or no reporting round yet).\n")
    else:
        stream.write("\n\n".join(render(c) for c in contracts.values()) + "\n")
    return EXIT_OK


def run_ack(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Execute ``edge-agent ack``."""
    stream = sys.stdout if out is None else out
    command: dict[str, Any] = {
        "command": "arrive" if args.arrive else "ack",
        "event_id": args.event_id,
    }
    if args.at is not None:
        try:
            command["at"] = format_instant(parse_instant(args.at))
        except ValueError:
            raise UsageError(
                f"--at {args.at!r}: expected an ISO 8601 instant with Z or an offset"
            ) from None
    # Imported here: the command line stays light (`verify` on a laptop loads no agent code).
    from edge_agent.reporting.contracts import COMMANDS_DIR

    try:
        spool = _state_dir(args) / COMMANDS_DIR
    except ConfigError as exc:
        print(f"edge-agent ack: cannot use the config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    spool.mkdir(mode=0o750, exist_ok=True)
    name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
    tmp, path, done = (spool / f"{name}{ext}" for ext in (".tmp", ".json", ".done"))
    tmp.write_text(json.dumps(command), encoding="utf-8")
    os.replace(tmp, path)  # the agent never sees a half-written command
    deadline = time.monotonic() + max(0.0, args.timeout)
    while not done.exists():
        if time.monotonic() > deadline:
            path.unlink(missing_ok=True)
            if done.exists():
                break  # answered just now
            print(
                f"edge-agent ack: the agent did not answer within {args.timeout:g} s "
                "(is it running? systemctl status edge-agent); nothing was changed",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        time.sleep(0.1)
    verdict = json.loads(done.read_text(encoding="utf-8"))
    done.unlink(missing_ok=True)
    if verdict.get("ok"):
        what = "arrival recorded" if args.arrive else "acknowledged"
        stream.write(f"{args.event_id}: {what}\n")
        return EXIT_OK
    print(f"edge-agent ack: rejected: {verdict.get('reason')}", file=sys.stderr)
    return EXIT_FAILURE
