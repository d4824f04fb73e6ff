"""``edge-agent demo``: simulators + a private broker + the agent, with a live terminal view.

Starts the bundled PLC simulators (scenario ``demo``: machines with different
behaviour, played faster than real time), a private MQTT broker (Mosquitto
if installed, else amqtt), the agent on ``config/demo.toml`` with the
simulator and broker ports filled in, and a subscriber that counts what
really arrives at the broker. Ctrl-C stops everything cleanly. The demo is
the only agent code that imports ``simulators``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import tomli

from edge_agent.cli import EXIT_FAILURE, EXIT_OK, add_config_argument
from edge_agent.cli import config_path as given_config

log = logging.getLogger("edge_agent.demo")

# In a source checkout the demo runs config/demo.toml; the wheel carries a copy.
_SOURCE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo.toml"
_PACKAGED_CONFIG = Path(__file__).resolve().parents[1] / "data" / "demo.toml"
DEMO_CONFIG = _SOURCE_CONFIG if _SOURCE_CONFIG.exists() else _PACKAGED_CONFIG
#: Where the demo's report goes without --report / --state-dir (the temporary state
#: directory is deleted at the end): the current directory.
DEFAULT_REPORT = Path("edge-demo-report.html")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` sub-command."""
    p = sub.add_parser(
        "demo",
        help="run the agent against the bundled simulators with a live view",
        description="Run simulators, a private MQTT broker and the agent together; show live "
        "states, "
        "KPIs and published messages. Ctrl-C stops.",
        epilog="Examples:\n  edge-agent demo\n  edge-agent demo --duration 30 --plain",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_argument(p, help_text="demo TOML (default: the bundled config/demo.toml)")
    p.add_argument(
        "--speed", type=float, default=10.0, help="simulated seconds per real second (default 10)"
    )
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument(
        "--plain", action="store_true", help="print plain lines instead of redrawing the screen"
    )
    p.add_argument(
        "--state-dir", default=None, help="keep the demo's buffer here (default: a temp dir)"
    )
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the run's HTML report here at the end (default: <state dir>/report.html "
        f"with --state-dir, else {DEFAULT_REPORT})",
    )
    p.set_defaults(func=_demo)


class Counter:
    """Counts messages arriving at the broker, per kind (paho thread → lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_kind: dict[str, int] = {}
        self.last: dict[str, Any] = {}

    def on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        """Paho callback (its own thread)."""
        try:
            payload = json.loads(message.payload)
            kind = str(payload.get("kind", "?"))
        except (ValueError, AttributeError):
            kind = "status"
            payload = None
        with self.lock:
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            if payload is not None:
                self.last[kind] = payload


def _subscribe(port: int, counter: Counter) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-demo-view-{time.time_ns()}")
    client.on_message = counter.on_message
    client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    return client


def _render(
    rt: Any, counter: Counter, broker: str, started: float, machines: list[str] | None = None
) -> str:
    """The live view; ``machines`` replaces the machine rows (the last ones before a stop)."""
    from edge_agent.contracts.text import render as render_contract  # not loaded by `run`

    lines = [
        f"edge-agent demo: {time.time() - started:5.0f} s  (broker: {broker}; Ctrl-C to stop)",
        "",
        f"{'machine':<10} {'state':<9} {'fault':>5} {'since':>7} {'avail':>7} {'perf':>7} "
        f"{'qual':>7} {'OEE':>7} "
        f"{'down s':>7} {'stops':>5}  reason",
    ]
    lines += _machine_rows(rt) if machines is None else machines
    for status in rt.contracts.latest.values():
        lines += ["", "contract " + render_contract(status)]
    with counter.lock:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(counter.by_kind.items())) or "none yet"
    lines += ["", f"messages received at the broker: {counts}"]
    lines.append(
        f"uplink: {_uplink_text(rt.uplink.state())}; devices up: "
        f"{rt.tags.devices_up()}/{len(rt.tags.comms)}"
    )
    return "\n".join(lines)


def _machine_rows(rt: Any) -> list[str]:
    """One row per machine: state, fault, since, today's KPIs so far."""
    lines: list[str] = []
    now = time.time()
    for name, mr in rt.machines.items():
        rec: dict[str, Any] = {}
        try:
            names = [n for n in mr.calc.window_names() if n.startswith("day:")]
            if names:
                rec = mr.calc.record(names[0], now=now).as_dict()
        except Exception as exc:  # a display row only; the agent's records are unaffected
            log.debug("Demo view: no day record for %s: %s", name, exc)
        since = f"{now - mr.since:5.0f} s" if mr.since else "      -"

        def pct(key: str, rec: dict[str, Any] = rec) -> str:
            v = rec.get(key)
            return f"{100 * v:6.1f}%" if isinstance(v, int | float) else "      -"

        lines.append(
            f"{name:<10} {mr.state.value:<9} {mr.fault or '':>5} {since:>7} {pct('availability')} "
            f"{pct('performance')} {pct('quality')} {pct('oee')} "
            f"{rec.get('downtime_total_s', 0):7.0f} {rec.get('stops', 0):5}  "
            f"{mr.config.fault_names.get(mr.fault, '') if mr.fault else ''}"
        )
    return lines


def _uplink_text(state: dict[str, Any]) -> str:
    """The uplink in words: ``connected, 0 messages waiting``; the buffer closes at the stop."""
    backlog = state.get("backlog")
    if backlog is None:
        return "agent stopped"
    link = "connected" if state.get("connected") else "NOT CONNECTED"
    return f"{link}, {backlog} message{'s' if backlog != 1 else ''} waiting"


async def _run_demo(args: argparse.Namespace) -> int:
    from edge_agent.config import load_config
    from edge_agent.demo_broker import DemoBroker
    from edge_agent.runtime import Runtime
    from simulators.host import SimulatorHost
    from simulators.scenario import load_scenario

    template_path = given_config(args, default=DEMO_CONFIG) or DEMO_CONFIG
    template = tomli.loads(await asyncio.to_thread(template_path.read_text, encoding="utf-8"))
    state_ctx = tempfile.TemporaryDirectory(prefix="edge-demo-") if args.state_dir is None else None
    state_dir = Path(args.state_dir) if args.state_dir else Path(state_ctx.name)  # type: ignore[union-attr]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    scenario = load_scenario("demo")
    try:
        async with (
            SimulatorHost(
                scenario, speed=args.speed, seed=1, modbus_tcp=("127.0.0.1", 0), opcua=None
            ) as sim,
            DemoBroker() as broker,
        ):
            config_path = state_dir / "agent.toml"
            config_path.write_text(_patched(template, sim.modbus_port, broker.port, state_dir))
            config = load_config(config_path)
            rt = Runtime(config, install_signals=False)
            agent = asyncio.create_task(rt.run(), name="agent")
            counter = Counter()
            view = await asyncio.to_thread(_subscribe, broker.port, counter)
            started = time.time()
            try:
                while not stop.is_set() and not agent.done():
                    if args.duration is not None and time.time() - started >= args.duration:
                        break
                    text = _render(rt, counter, broker.kind, started)
                    if args.plain:
                        print(text + "\n", flush=True)
                    else:
                        sys.stdout.write("\x1b[H\x1b[2J" + text + "\n")
                        sys.stdout.flush()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=2.0 if args.plain else 1.0)
            finally:
                # The machines as they were running: once stopped, the agent's own
                # downtime is unknown time and every machine would show "unknown".
                last_rows = _machine_rows(rt)
                rt.request_stop()
                code = await agent
                view.loop_stop()
                view.disconnect()
            print(_render(rt, counter, broker.kind, started, machines=last_rows))
            report = args.report or (
                state_dir / "report.html" if args.state_dir else DEFAULT_REPORT
            )
            await asyncio.to_thread(_write_report, config, started, report)
            return EXIT_OK if code == 0 else EXIT_FAILURE
    finally:
        if state_ctx is not None:
            state_ctx.cleanup()


def _write_report(config: Any, started: float, path: Path) -> None:
    """The run's period report (``edge-agent report``) as one HTML file; prints its path."""
    from edge_agent.report.html import render
    from edge_agent.report.load import from_buffer

    data = from_buffer(
        config.storage.path,
        start=float(int(started)),
        end=time.time(),
        state_dir=config.agent.state_dir,
        config=config,
    )
    data.title = "edge-agent demo report"
    try:
        path.write_text(render(data), encoding="utf-8")
    except OSError as exc:
        print(f"could not write the report: {exc}", file=sys.stderr)
        return
    print(f"\nreport written: {path.resolve()} (open it in a browser)", flush=True)


def _patched(template: dict[str, Any], modbus_port: int, mqtt_port: int, state_dir: Path) -> str:
    """The demo TOML with the real ports and state dir filled in (rendered back to TOML)."""
    template = json.loads(json.dumps(template, default=str))
    template.setdefault("agent", {})["state_dir"] = str(state_dir)
    template.setdefault("mqtt", {})["port"] = mqtt_port
    template["mqtt"]["host"] = "127.0.0.1"
    for dev in template.get("devices", {}).values():
        if dev.get("protocol") == "modbus_tcp":
            dev["endpoint"] = f"127.0.0.1:{modbus_port}"
    return _to_toml(template)


def _to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Minimal TOML writer for the demo's own config (tables, scalars, arrays of scalars/tables)."""
    scalars: list[str] = []
    tables: list[str] = []
    for key, value in data.items():
        qkey = key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)
        path = f"{prefix}.{qkey}" if prefix else qkey
        if isinstance(value, dict):
            tables.append(f"\n[{path}]\n" + _to_toml(value, path))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                tables.append(f"\n[[{path}]]\n" + _to_toml(item, path))
        else:
            scalars.append(f"{qkey} = {json.dumps(value)}")
    return "\n".join(scalars) + "".join(tables) + "\n"


def _demo(args: argparse.Namespace) -> int:
    if not args.verbose:
        # The simulated machines start now, so every day window begins with hours of no
        # data: 'low_coverage' is true but says nothing here, and would scroll the live view.
        logging.getLogger("edge_agent.machines").setLevel(logging.ERROR)
    return asyncio.run(_run_demo(args))
