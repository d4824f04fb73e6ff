"""``edge-agent report`` and ``edge-agent serve-report``: the period report as one HTML page.

``report`` writes one self-contained HTML file (inline CSS and SVG, no script, nothing
fetched when opened) for ``[--from, --to)``: per machine the state timeline, the
downtime Pareto, the loss waterfall, the KPI table per period / day / shift with data
coverage, MTBF/MTTR, the stop list with response times, and the contract terms. Its
figures are the published records' (read from the buffer, read-only), with the KPI
profile hash and the evidence chain's verification result. ``--bundle FILE`` makes the
same report from an evidence bundle, an MQTT capture or ``export --format jsonl``
files, on a machine that never saw the gateway.

``serve-report`` serves the same page live over HTTP, read-only (GET/HEAD; anything
else is 405), on 127.0.0.1 unless ``--bind`` says otherwise.

Exit codes: 0 written / served until Ctrl-C, 1 input unreadable, 2 usage.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any

from edge_agent.cli import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    UsageError,
    add_config_argument,
    config_path,
    describe_os_error,
)

DEFAULT_PORT = 8088
DEFAULT_HOURS = 24.0


def _source_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(
        p,
        help_text="agent TOML file: buffer, state directory and fault names "
        "(default /etc/edge-agent/agent.toml)",
    )
    p.add_argument("--db", type=Path, help="buffer database file (instead of a config file)")
    p.add_argument("--state-dir", type=Path, help="state directory (keys, status.json) with --db")
    p.add_argument("--machine", metavar="M", help="only this machine")
    p.add_argument("--contract", metavar="C", help="only this contract's terms")
    p.add_argument(
        "--no-verify", action="store_true", help="do not check the evidence chain (faster)"
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``report`` and ``serve-report`` sub-commands."""
    p = sub.add_parser(
        "report",
        help="write a period report as one self-contained HTML file",
        description="A period report people read in a browser: state timeline, downtime "
        "Pareto, loss waterfall, KPIs per period/day/shift, stops, contract terms. One "
        "HTML file, no network needed to open it; prints to PDF from the browser.",
        epilog="Exit codes: 0 written, 1 input unreadable, 2 usage.\nExamples:\n"
        "  edge-agent report --from 2026-11-01 --to 2026-12-01 -o november.html\n"
        "  edge-agent report agent.toml --from 2026-11-26 --to 2026-11-27 --machine press1 "
        "-o press1.html\n"
        "  edge-agent report --bundle nov.zip --key 'SHA256:3f2a ...' -o november.html\n"
        "  edge-agent report --bundle nov.zip agent.toml -o november.html   # + fault names",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _source_arguments(p)
    p.add_argument("--from", dest="start", metavar="ISO", help="start, inclusive")
    p.add_argument("--to", dest="end", metavar="ISO", help="end, exclusive")
    p.add_argument(
        "--bundle",
        action="append",
        type=Path,
        metavar="FILE",
        help="report from an evidence bundle, MQTT capture or export JSONL (repeatable) "
        "instead of the buffer; --from/--to default to what it covers",
    )
    p.add_argument(
        "--key",
        action="append",
        metavar="KEY",
        help="with --bundle: trusted device key (PEM file or fingerprint) for the chain check",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="the HTML file to write")
    p.set_defaults(func=run)
    s = sub.add_parser(
        "serve-report",
        help="serve the live report over HTTP (read-only, loopback by default)",
        description="Serve the report page live for a technician on site. Read-only: GET "
        "and HEAD only (anything else: 405); binds 127.0.0.1 unless --bind is given.",
        epilog="Exit codes: 0 stopped with Ctrl-C, 1 cannot bind or read, 2 usage.\nExamples:\n"
        "  edge-agent serve-report\n  edge-agent serve-report --port 8088 --hours 8\n"
        "  edge-agent serve-report --bind 0.0.0.0   # reachable from the plant network\n"
        "  curl 'http://127.0.0.1:8088/?from=2026-11-26&to=2026-11-27&machine=press1'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _source_arguments(s)
    s.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDR",
        help="address to listen on (default 127.0.0.1; anything else is your explicit choice)",
    )
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    s.add_argument(
        "--hours",
        type=float,
        default=DEFAULT_HOURS,
        help=f"default span: the last N hours (default {DEFAULT_HOURS:g}); ?from=&to= override",
    )
    s.set_defaults(func=run_serve)


def _locate(args: argparse.Namespace) -> tuple[Path, Path, Any]:
    """Buffer path, state directory and config (None with --db)."""
    given = config_path(args, default=None)
    if args.db is not None:
        if given is not None:
            raise UsageError("give a config FILE or --db, not both")
        db = Path(args.db)
        return db, args.state_dir or db.parent, None
    from edge_agent.cli import DEFAULT_CONFIG
    from edge_agent.config import load_config

    config = load_config(given or DEFAULT_CONFIG)
    return config.storage.path, args.state_dir or config.agent.state_dir, config


def _times(args: argparse.Namespace) -> tuple[float | None, float | None]:
    from edge_agent.commands.export import parse_time

    try:
        start = parse_time(args.start) if args.start else None
        end = parse_time(args.end) if args.end else None
    except ValueError as exc:
        raise UsageError(f"invalid time: {exc}") from None
    if start is not None and end is not None and end <= start:
        raise UsageError("--to must be after --from")
    return start, end


def build_from_buffer(
    args: argparse.Namespace, start: float, end: float, located: tuple[Path, Path, Any]
) -> Any:
    """The report data from the buffer for ``[start, end)``."""
    from edge_agent.report.load import from_buffer

    db, state_dir, config = located
    if config is not None and args.machine is not None and args.machine not in config.machines:
        raise UsageError(f"--machine {args.machine!r}: not in the configuration")
    return from_buffer(
        db,
        start=start,
        end=end,
        machine=args.machine,
        contract=args.contract,
        state_dir=state_dir,
        config=config,
        verify=not args.no_verify,
    )


def run(args: argparse.Namespace) -> int:
    """Write the report; see the module docstring for exit codes."""
    from edge_agent.errors import ConfigError
    from edge_agent.report.html import render

    start, end = _times(args)
    try:
        if args.bundle:
            data = _from_bundle(args, start, end)
        else:
            if start is None or end is None:
                raise UsageError("--from and --to are required (except with --bundle)")
            located = _locate(args)
            if not located[0].exists():
                print(f"edge-agent report: no buffer database at {located[0]}", file=sys.stderr)
                return EXIT_FAILURE
            data = build_from_buffer(args, start, end, located)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except sqlite3.Error as exc:
        print(f"edge-agent report: reading the buffer failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except ValueError as exc:
        print(f"edge-agent report: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    page = render(data)
    try:
        tmp = args.output.with_name(args.output.name + ".tmp")
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(args.output)
    except OSError as exc:
        print(f"edge-agent report: cannot write {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    machines = ", ".join(data.machines) or "no machine"
    verdict = data.verification.summary.split(":")[0] if data.verification else "not checked"
    print(f"wrote {args.output} ({len(page)} bytes; {machines}; evidence: {verdict})")
    return EXIT_OK


def _from_bundle(args: argparse.Namespace, start: float | None, end: float | None) -> Any:
    from edge_agent.commands.verify import _trust
    from edge_agent.report.files import from_files

    for path in args.bundle:
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
    trust = _trust(args.key) if args.key else None
    given = config_path(args, default=None)
    names: dict[str, dict[int, str]] = {}
    if given is not None:  # only for the fault names: the figures are the bundle's
        from edge_agent.config import load_config
        from edge_agent.report.records import fault_names_of

        names = fault_names_of(load_config(given))
    return from_files(
        list(args.bundle),
        start=start,
        end=end,
        machine=args.machine,
        contract=args.contract,
        trusted_keys=list(trust.keys) if trust else None,
        trusted_fingerprints=set(trust.fingerprints) if trust else None,
        fault_names=names,
    )


def run_serve(args: argparse.Namespace) -> int:
    """Serve the live report until Ctrl-C."""
    from edge_agent.errors import ConfigError
    from edge_agent.report.html import render
    from edge_agent.report.serve import ReportServer

    try:
        located = _locate(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG

    def page(start: float, end: float, machine: str | None, contract: str | None) -> str:
        ns = argparse.Namespace(**vars(args))
        ns.machine = machine or args.machine
        ns.contract = contract or args.contract
        return render(build_from_buffer(ns, start, end, located))

    try:
        server = ReportServer((args.bind, args.port), page, args.hours)
    except OSError as exc:
        print(
            f"edge-agent serve-report: cannot listen on {args.bind}:{args.port}: "
            f"{describe_os_error(exc)}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    host, port = str(server.server_address[0]), int(server.server_address[1])
    print(f"serving the report on http://{host}:{port}/ (read-only; Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return EXIT_OK
