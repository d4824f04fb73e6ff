"""``edge-agent-sim``: list, describe and run the bundled PLC simulators.

Sub-commands: ``list-scenarios``; ``describe --scenario NAME`` (register map
table, or ``--format toml`` for a ready-to-paste agent config, default
both); ``run`` (serve Modbus TCP / RTU / OPC-UA until SIGINT or SIGTERM, or
``--duration-s`` wall seconds). ``run`` prints the bound addresses and, with
``--ready-file``, writes them as JSON atomically once every front end is
listening, so a parent process can wait for the file instead of sleeping.
Exit codes: 0 ok, 2 usage or scenario error, 1 runtime failure. Secrets
(OPC-UA password) are taken from an environment variable and never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from simulators.describe import describe_table, describe_toml
from simulators.host import SimulatorHost
from simulators.scenario import ScenarioError, list_scenarios, load_scenario


def _port(text: str) -> int | None:
    if text == "off":
        return None
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("expected a port 0..65535 or 'off'")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("expected a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(prog="edge-agent-sim", description="Bundled PLC simulators.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list-scenarios", help="list the bundled scenarios")

    d = sub.add_parser("describe", help="print the register map, node ids and agent TOML")
    d.add_argument("--scenario", required=True, help="bundled name or path to a TOML file")
    d.add_argument("--format", choices=("table", "toml", "both"), default="both")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--modbus-port", type=int, default=5020)
    d.add_argument("--opcua-port", type=int, default=4840)
    d.add_argument("--rtu-port", default=None, help="emit modbus_rtu blocks for this serial port")
    d.add_argument("--baudrate", type=int, default=19200)

    r = sub.add_parser("run", help="run a scenario and serve it")
    r.add_argument("--scenario", required=True, help="bundled name or path to a TOML file")
    r.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    r.add_argument("--modbus-port", type=_port, default=5020, help="0 = any free port, off")
    r.add_argument("--opcua-port", type=_port, default=4840, help="0 = any free port, off")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``edge-agent-sim``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
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
        return asyncio.run(_run(args))
    except ScenarioError as exc:
        print(f"edge-agent-sim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"edge-agent-sim: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
