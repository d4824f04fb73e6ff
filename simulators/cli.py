"""``edge-agent-sim``: list, describe and run the bundled PLC simulators.

Sub-commands: ``list-scenarios``; ``describe --scenario NAME`` (register map
table, or ``--format toml`` for a ready-to-paste agent config, default
both); ``run`` (serve until SIGINT or SIGTERM, or ``--duration-s`` wall
seconds). Each protocol is served only when asked for: ``--modbus-port``,
``--opcua-port``, ``--rtu-port`` (with none of them, Modbus TCP on 5020, the
port the documentation uses). ``run`` prints the bound addresses and, with
``--ready-file``, writes them as JSON atomically once every front end is
listening, so a parent process can wait for the file instead of sleeping.
Library chatter (asyncua's security notices, pymodbus) is hidden unless
``-v``. Exit codes: 0 ok, 2 usage or scenario error, 1 runtime failure (a
port in use, an unwritable file), 130 Ctrl-C, 141 output closed early
(``| head``); no Python traceback is shown (``-vv`` shows one for a bug).
Secrets (OPC-UA password) are taken from an environment variable and never
printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from simulators.describe import describe_table, describe_toml
from simulators.host import SimulatorHost
from simulators.scenario import ScenarioError, list_scenarios, load_scenario


def _port(text: str) -> int | None:
    if text == "off":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a port 0..65535 or 'off'") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("expected a port 0..65535 or 'off'")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a positive number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("expected a positive number")
    return value


DEFAULT_MODBUS_PORT = 5020
_RAW = argparse.RawDescriptionHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(
        prog="edge-agent-sim",
        description="Bundled PLC simulators: machines with run bit, fault codes and part "
        "counters behind Modbus TCP, Modbus RTU and OPC-UA, with ground truth for tests.",
        epilog="Examples:\n  edge-agent-sim list-scenarios\n"
        "  edge-agent-sim describe --scenario demo --format toml > sim.toml\n"
        "  edge-agent-sim run --scenario demo --modbus-port 5020\n"
        "Exit codes: 0 ok, 1 runtime failure, 2 usage or scenario error, 130 Ctrl-C,\n"
        "141 output closed early (| head).",
        formatter_class=_RAW,
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show library messages (asyncua, pymodbus); -vv debug and tracebacks",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "list-scenarios",
        help="list the bundled scenarios",
        description="List the bundled scenarios with a one-line description each.",
        epilog="Example:\n  edge-agent-sim list-scenarios",
        formatter_class=_RAW,
    )

    d = sub.add_parser(
        "describe",
        help="print the register map, node ids and agent TOML",
        description="Print a scenario's register map and OPC-UA node ids (table), and an agent "
        "configuration that reads it (toml), ready to paste into agent.toml.",
        epilog="Examples:\n  edge-agent-sim describe --scenario demo\n"
        "  edge-agent-sim describe --scenario e2e --format toml --modbus-port 5021 > sim.toml\n"
        "  edge-agent-sim describe --scenario demo --rtu-port /dev/ttyUSB0 --format toml",
        formatter_class=_RAW,
    )
    d.add_argument("--scenario", required=True, help="bundled name or path to a TOML file")
    d.add_argument("--format", choices=("table", "toml", "both"), default="both")
    d.add_argument("--host", default="127.0.0.1", help="host in the emitted endpoints")
    d.add_argument("--modbus-port", type=int, default=DEFAULT_MODBUS_PORT)
    d.add_argument("--opcua-port", type=int, default=4840)
    d.add_argument("--rtu-port", default=None, help="emit modbus_rtu blocks for this serial port")
    d.add_argument("--baudrate", type=int, default=19200)

    r = sub.add_parser(
        "run",
        help="run a scenario and serve it",
        description="Run a scenario and serve it over the protocols asked for: "
        "--modbus-port (Modbus TCP), --opcua-port (OPC-UA), --rtu-port (Modbus RTU). "
        f"With none of them, Modbus TCP on {DEFAULT_MODBUS_PORT}. Port 0 picks a free port "
        "(printed, and written to --ready-file).",
        epilog="Examples:\n  edge-agent-sim run --scenario demo            "
        f"# Modbus TCP on 127.0.0.1:{DEFAULT_MODBUS_PORT}\n"
        "  edge-agent-sim run --scenario e2e --modbus-port 5020 --opcua-port 4840 --speed 60\n"
        "  edge-agent-sim run --scenario demo --rtu-port /dev/pts/3\n"
        "  edge-agent-sim run --scenario steady --modbus-port 0 --ready-file ready.json",
        formatter_class=_RAW,
    )
    r.add_argument("--scenario", required=True, help="bundled name or path to a TOML file")
    r.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    r.add_argument(
        "--modbus-port", type=_port, default=None, help="serve Modbus TCP here (0 = any free port)"
    )
    r.add_argument(
        "--opcua-port", type=_port, default=None, help="serve OPC-UA here (0 = any free port)"
    )
    r.add_argument("--rtu-port", default=None, help="serial device or pty to serve RTU on")
    r.add_argument("--baudrate", type=int, default=19200)
    r.add_argument("--speed", type=_positive, default=1.0, help="sim seconds per wall second")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--truth", default=None, help="ground-truth JSON Lines file")
    r.add_argument("--ready-file", default=None, help="write bound addresses here (JSON)")
    r.add_argument("--state-dir", default=None, help="OPC-UA certificate directory")
    r.add_argument(
        "--opcua-security",
        choices=("none", "sign", "sign-encrypt", "all"),
        default="none",
        help="Basic256Sha256 modes to offer (all = None + Sign + SignAndEncrypt)",
    )
    r.add_argument("--opcua-trust-dir", default=None, help="only accept client certs in this dir")
    r.add_argument("--opcua-user", default=None, help="require this user name")
    r.add_argument(
        "--opcua-password-env",
        default="EDGE_SIM_OPCUA_PASSWORD",
        help="environment variable holding the OPC-UA password",
    )
    r.add_argument(
        "--connection-log", default=None, help="log Modbus TCP connections here (JSON Lines)"
    )
    r.add_argument("--duration-s", type=_positive, default=None, help="stop after N wall seconds")
    r.add_argument("--tick-s", type=_positive, default=0.1, help="model update period (wall)")
    return p


def _served(args: argparse.Namespace) -> None:
    """Opt-in protocols: nothing asked for means Modbus TCP on the documented port."""
    if args.modbus_port is None and args.opcua_port is None and args.rtu_port is None:
        args.modbus_port = DEFAULT_MODBUS_PORT


def _configure_logging(verbose: int) -> None:
    """Quiet by default: the simulator's own warnings only; libraries with -v."""
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    # asyncua warns about the None security policy on every start ("password may get
    # transferred in plaintext"): true, intended for a loopback test server, and noise.
    for noisy in ("asyncua", "pymodbus"):
        logging.getLogger(noisy).setLevel(level if verbose else logging.ERROR)


def _write_ready(path: str, info: dict[str, object]) -> None:
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(info, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(target)


async def _run(args: argparse.Namespace) -> int:
    security = None
    if args.opcua_port is not None and (
        args.opcua_security != "none" or args.opcua_user or args.opcua_trust_dir
    ):
        from simulators.opcua_server import OpcUaSecurity  # heavy import

        password = os.environ.get(args.opcua_password_env) if args.opcua_user else None
        if args.opcua_user and not password:
            print(f"edge-agent-sim: set {args.opcua_password_env} to the password", file=sys.stderr)
            return 2
        security = OpcUaSecurity(
            modes=args.opcua_security,
            trust_dir=Path(args.opcua_trust_dir) if args.opcua_trust_dir else None,
            username=args.opcua_user,
            password=password,
        )
    host = SimulatorHost(
        load_scenario(args.scenario),
        speed=args.speed,
        seed=args.seed,
        modbus_tcp=None if args.modbus_port is None else (args.host, args.modbus_port),
        opcua=None if args.opcua_port is None else (args.host, args.opcua_port),
        rtu_port=args.rtu_port,
        rtu_baudrate=args.baudrate,
        truth_path=args.truth,
        state_dir=args.state_dir,
        opcua_security=security,
        tick_s=args.tick_s,
        connection_log=args.connection_log,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with host:
        info = host.ready_info()
        info["pid"] = os.getpid()
        if "modbus_tcp" in info:
            print(f"Modbus TCP listening on {args.host}:{host.modbus_port}", flush=True)
        if "modbus_rtu" in info:
            print(f"Modbus RTU serving on {args.rtu_port}", flush=True)
        if "opcua" in info:
            print(f"OPC-UA listening on {host.opcua_endpoint}", flush=True)
        if args.ready_file:
            _write_ready(args.ready_file, info)
        with contextlib.suppress(asyncio.TimeoutError):  # builtin TimeoutError only from 3.11
            await asyncio.wait_for(stop.wait(), timeout=args.duration_s)
    print("Simulator stopped", flush=True)
    return 0


def _main(args: argparse.Namespace) -> int:
    if args.command == "list-scenarios":
        for name in list_scenarios():
            sc = load_scenario(name)
            print(f"{name:<12} {sc.description}")
        return 0
    if args.command == "describe":
        sc = load_scenario(args.scenario)
        if args.format in ("table", "both"):
            print(describe_table(sc))
        if args.format in ("toml", "both"):
            print(
                describe_toml(
                    sc,
                    host=args.host,
                    modbus_port=args.modbus_port,
                    opcua_port=args.opcua_port,
                    rtu_port=args.rtu_port,
                    baudrate=args.baudrate,
                )
            )
        return 0
    _served(args)
    return asyncio.run(_run(args))


def _err(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"edge-agent-sim: {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``edge-agent-sim``; returns the exit code (never a traceback)."""
    verbose = 0
    try:
        try:
            args = build_parser().parse_args(argv)
            verbose = args.verbose
            _configure_logging(verbose)
            return _main(args)
        finally:
            sys.stdout.flush()  # a reader that closed the pipe (| head) shows up here
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return 141
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except ScenarioError as exc:
        _err(str(exc))
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        _err(f"{where}{exc.strerror or exc}")
        return 1
    except Exception as exc:
        _err(f"internal error: {type(exc).__name__}: {exc} (run with -vv for the traceback)")
        if verbose >= 2:
            traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
