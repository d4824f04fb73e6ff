"""The ``edge-agent-collect`` command line: run, migrate, status, verify, check-config.

Exit codes: 0 done, 1 runtime failure (database unreachable for ``migrate``/``status``,
pending migrations with ``migrate = "check"``), 2 bad arguments or configuration (every
problem named with file, key and expectation). Without the ``collector`` extra installed
the command says which package to install instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from edge_agent import __version__
from edge_agent.collect import config
from edge_agent.errors import ConfigError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent-collect",
        description="Fleet back office: collect edge-agent messages from MQTT 5 into PostgreSQL.",
        epilog="Examples:\n  edge-agent-collect check-config /etc/edge-agent/collector.toml\n"
        "  edge-agent-collect migrate -c /etc/edge-agent/collector.toml\n"
        "  edge-agent-collect run -c /etc/edge-agent/collector.toml\n"
        "  edge-agent-collect status --dsn 'host=db1 dbname=fleet user=ops'\n"
        "  edge-agent-collect verify -c /etc/edge-agent/collector.toml --agent gw-1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="collect until SIGTERM/SIGINT")
    run.add_argument("-c", "--config", required=True, type=Path, help="collector TOML file")
    check = sub.add_parser("check-config", help="validate a collector TOML file, connect nothing")
    check.add_argument("config", type=Path)
    for name, text in (
        ("migrate", "apply pending schema migrations"),
        ("status", "show agents, gaps, duplicates, quarantine and collector instances"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("-c", "--config", type=Path, help="collector TOML file ([database] is used)")
        p.add_argument("--dsn", help="libpq connection string, instead of --config")
        if name == "status":
            p.add_argument("--json", action="store_true", help="one JSON document")
            p.add_argument("--limit", type=int, default=200, help="agents listed (default 200)")
    ver = sub.add_parser(
        "verify",
        help="check the stored signed records of each agent (evidence chain) and record "
        "the outcome per agent",
    )
    ver.add_argument(
        "-c", "--config", required=True, type=Path, help="collector TOML ([evidence.trust])"
    )
    ver.add_argument("--agent", action="append", default=[], help="only this agent (repeatable)")
    ver.add_argument(
        "--changed",
        action="store_true",
        help="skip agents with no signed record received since their last check",
    )
    ver.add_argument("--json", action="store_true", help="one JSON document")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``edge-agent-collect``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format=LOG_FORMAT,
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("paho").setLevel(logging.CRITICAL)
    # yoyo logs every migration step at INFO; the collector logs what was applied itself.
    logging.getLogger("yoyo").setLevel(logging.WARNING)
    try:
        if args.command == "check-config":
            cfg = config.load(args.config)
            print(f"{args.config}: ok ({len(cfg.mqtt.subscriptions())} subscription(s))")
            return EXIT_OK
        if args.command == "run":
            return _run(config.load(args.config))
        if args.command == "verify":
            return _verify(args, config.load(args.config))
        db_cfg = _database(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except _UsageError as exc:
        print(f"edge-agent-collect {args.command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return _db_command(args, db_cfg)


class _UsageError(Exception):
    pass


def _database(args: argparse.Namespace) -> config.DatabaseConfig:
    if args.dsn and args.config:
        raise _UsageError("give --config or --dsn, not both")
    if args.dsn:
        return config.DatabaseConfig(dsn=args.dsn)
    if args.config:
        return config.load(args.config).database
    raise _UsageError("--config or --dsn is required")


def _missing_extra(exc: ImportError) -> int:
    print(
        f"edge-agent-collect: {exc.name or exc} is not installed; "
        "install the collector with: pip install 'edge-agent[collector]'",
        file=sys.stderr,
    )
    return EXIT_FAILURE


def _db_command(args: argparse.Namespace, db_cfg: config.DatabaseConfig) -> int:
    try:
        import psycopg

        from edge_agent.collect import migrate, status
    except ImportError as exc:  # pragma: no cover - depends on the installation
        return _missing_extra(exc)
    try:
        if args.command == "migrate":
            applied = migrate.apply(db_cfg)
            print(f"applied: {', '.join(applied)}" if applied else "schema up to date")
            return EXIT_OK
        doc = status.collect(db_cfg, limit=max(1, args.limit))
        sys.stdout.write(status.as_json(doc) if args.json else status.render(doc))
        return EXIT_FAILURE if doc["migrations"]["pending"] else EXIT_OK
    except (psycopg.Error, config.SecretError) as exc:
        print(f"edge-agent-collect {args.command}: {_first_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE


def _verify(args: argparse.Namespace, cfg: config.CollectorConfig) -> int:
    try:
        import psycopg

        from edge_agent.collect import db, verification
    except ImportError as exc:  # pragma: no cover - depends on the installation
        return _missing_extra(exc)
    try:
        with db.connect(cfg.database, "verify", autocommit=True) as conn:
            verdicts = verification.run(
                conn, cfg.evidence, agents=args.agent, changed_only=args.changed
            )
    except (psycopg.Error, config.SecretError, verification.TrustError) as exc:
        print(f"edge-agent-collect verify: {_first_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    missing = sorted(set(args.agent) - {v.agent for v in verdicts})
    if args.json:
        doc = {
            "agents": [
                {
                    "agent": v.agent,
                    "status": v.status or "unchanged",
                    "records": v.records,
                    "epoch": v.epoch,
                    "verified_through_seq": v.through_seq,
                    "problems": [f.as_dict() for f in v.problems],
                }
                for v in verdicts
            ],
            "unknown_agents": missing,
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        for v in verdicts:
            if v.skipped:
                print(f"{v.agent}: unchanged since the last check")
                continue
            text = f"{v.agent}: {v.status.upper()}"
            if v.status == "verified":
                text += f" ({v.records} signed records, through seq {v.through_seq})"
            print(text)
            if v.detail:
                for line in v.detail.splitlines():
                    print(f"  {line}")
        for agent in missing:
            print(f"{agent}: not heard by the collector")
    bad = any(v.status == verification.PROBLEM_STATUS for v in verdicts)
    return EXIT_FAILURE if bad or missing else EXIT_OK


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _run(cfg: config.CollectorConfig) -> int:
    try:
        import psycopg

        from edge_agent.collect.collector import Collector, MigrationsPending
        from edge_agent.collect.schemas import load_schemas
    except ImportError as exc:  # pragma: no cover - depends on the installation
        return _missing_extra(exc)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("edge_agent.collect").info(
            "Stopping signal=%s", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        collector = Collector(cfg, load_schemas(), stop=stop)
        return collector.run()
    except (MigrationsPending, config.SecretError) as exc:
        print(f"edge-agent-collect run: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (OSError, ValueError) as exc:  # TLS files missing or unreadable, bad key pair
        print(f"edge-agent-collect run: mqtt TLS setup: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except psycopg.Error as exc:
        print(f"edge-agent-collect run: database: {_first_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
