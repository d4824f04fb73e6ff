"""``edge-agent evidence export``: one signed bundle (ZIP) of the evidence for a period.

Takes the agent's configuration (or ``--db`` and ``--state-dir``), a half-open
range ``[--from, --to)`` and optionally ``--machine``, and writes the bundle
described in ``docs/evidence.md``. It reads the buffer read-only (safe while the
agent runs) and signs the manifest with the device key, so it must run as the
agent's user or root. Exit codes: 0 written, 1 buffer or key unreadable, 2 usage.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from edge_agent.cli import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    UsageError,
    add_config_argument,
    config_path,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``evidence export``."""
    p = sub.add_parser(
        "evidence",
        help="export a signed evidence bundle for a period",
        description="Evidence bundles: signed records, samples, profiles and keys in one ZIP.",
        epilog="Examples:\n"
        "  edge-agent evidence export --from 2026-11-01 --to 2026-12-01 -o nov.zip\n"
        "  edge-agent evidence export agent.toml --from 2026-11-01 --to 2026-12-01 "
        "--machine press1 -o press1-nov.zip\n"
        "Check a bundle anywhere with: edge-agent verify nov.zip --key FINGERPRINT",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="evidence_command", metavar="ACTION", required=True)
    e = verbs.add_parser(
        "export",
        help="write a bundle",
        description="Write an evidence bundle (ZIP) for [--from, --to).",
        epilog="Example:\n  edge-agent evidence export --from 2026-11-01T00:00+01:00 "
        "--to 2026-12-01T00:00+01:00 --machine press1 -o press1-2026-11.zip",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_argument(e)
    e.add_argument("--db", type=Path, help="buffer database (instead of a config file)")
    e.add_argument("--state-dir", type=Path, help="state directory with the keys (with --db)")
    e.add_argument("--agent", help="agent id (with --db; default: from the records)")
    e.add_argument("--from", dest="start", required=True, metavar="ISO", help="start, inclusive")
    e.add_argument("--to", dest="end", required=True, metavar="ISO", help="end, exclusive")
    e.add_argument("--machine", help="only this machine's records in full")
    e.add_argument("-o", "--output", type=Path, required=True, help="bundle file (.zip)")
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the bundle; see the module docstring for exit codes."""
    from edge_agent.commands.export import parse_time
    from edge_agent.errors import ConfigError
    from edge_agent.evidence.export import export_bundle
    from edge_agent.evidence.keys import KeyFileError, KeyStore
    from edge_agent.evidence.samples import FirstOf, JournalSamples, ReadingsSamples

    try:
        start, end = parse_time(args.start), parse_time(args.end)
    except ValueError as exc:
        raise UsageError(f"invalid time: {exc}") from None
    if end <= start:
        raise UsageError("--to must be after --from")
    given = config_path(args, default=None)
    if args.db is not None and given is not None:
        raise UsageError("give a config FILE or --db, not both")
    machines: dict[str, object] = {}
    profiles = {}
    contracts = {}
    if args.db is not None:
        db = Path(args.db)
        state_dir = args.state_dir or db.parent
        agent = args.agent
    else:
        from edge_agent.cli import DEFAULT_CONFIG
        from edge_agent.config import load_config

        try:
            config = load_config(given or DEFAULT_CONFIG)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return EXIT_CONFIG
        db, state_dir, agent = config.storage.path, config.agent.state_dir, config.agent.id
        machines = dict(config.machines)
        profiles = {name: m.kpi for name, m in config.machines.items()}
        contracts = dict(config.contracts)
    if args.machine is not None and machines and args.machine not in machines:
        raise UsageError(f"--machine {args.machine!r}: not in the configuration")
    if not db.exists():
        print(f"edge-agent evidence export: no buffer database at {db}", file=sys.stderr)
        return EXIT_FAILURE
    keys = KeyStore(state_dir)
    try:
        if keys.active() is None:
            print(
                f"edge-agent evidence export: no device key in {keys.directory}: the bundle "
                "could not be signed",
                file=sys.stderr,
            )
            return EXIT_FAILURE
    except KeyFileError as exc:
        print(
            f"edge-agent evidence export: {exc} (run as the agent's user or root)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if agent is None:
        agent = _agent_from_db(db)
    try:
        from edge_agent.buffer.schema import connect

        con = connect(db, read_only=True)
        try:
            readings = ReadingsSamples(con, machines) if machines else None
            source = FirstOf(JournalSamples(con), readings)
            result = export_bundle(
                db=db,
                out=args.output,
                start=start,
                end=end,
                agent=agent or "",
                keys=keys,
                machine=args.machine,
                samples=source,
                current_profiles=profiles,
                current_contracts=contracts,
            )
        finally:
            con.close()
    except sqlite3.Error as exc:
        print(f"edge-agent evidence export: reading {db} failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"wrote {result.path}: {result.records} records, {result.headers} headers, "
        f"{result.bytes} bytes, manifest {'signed' if result.signed else 'NOT signed'}"
    )
    return EXIT_OK


def _agent_from_db(db: Path) -> str | None:
    import json

    from edge_agent.buffer.schema import connect

    con = connect(db, read_only=True)
    try:
        row = con.execute("SELECT envelope FROM evidence ORDER BY seq DESC LIMIT 1").fetchone()
    finally:
        con.close()
    if row is None:
        return None
    agent = json.loads(row[0]).get("agent")
    return agent if isinstance(agent, str) else None
