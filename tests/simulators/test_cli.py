"""The edge-agent-sim command line: list, describe (TOML is valid), run as a subprocess."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli
from pymodbus.client import AsyncModbusTcpClient

from simulators.cli import _served, build_parser, main
from simulators.truth import read_truth
from tests.plugins.simulator import SimProcess

ROOT = Path(__file__).resolve().parents[2]


def test_list_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    """list-scenarios prints every bundled scenario with its description."""
    assert main(["list-scenarios"]) == 0
    out = capsys.readouterr().out
    for name in ("steady", "microstops", "breakdowns", "rollover", "demo", "e2e"):
        assert f"\n{name} " in "\n" + out


def test_describe_toml_is_valid_agent_config(capsys: pytest.CaptureFixture[str]) -> None:
    """Describe --format toml emits parseable TOML in the shared device/machine format."""
    assert (
        main(["describe", "--scenario", "rollover", "--format", "toml", "--modbus-port", "5021"])
        == 0
    )
    cfg = tomli.loads(capsys.readouterr().out)
    m1, m2 = cfg["devices"]["m1"], cfg["devices"]["m2"]
    assert m1["protocol"] == "modbus_tcp"
    assert m1["endpoint"] == "127.0.0.1:5021"
    assert m1["addressing"] == "zero"
    assert m1["unit_id"] == 1
    assert m1["tags"]["good"] == {"table": "holding", "address": 16, "type": "uint16"}
    assert m2["tags"]["good"] == {
        "table": "holding",
        "address": 10,
        "type": "uint32",
        "word_order": "CDAB",
    }
    assert m1["tags"]["running"] == {"table": "coil", "address": 0, "type": "bool"}
    assert m1["tags"]["status_text"]["length"] == 16
    ua = cfg["devices"]["m1ua"]
    assert ua["endpoint"] == "opc.tcp://127.0.0.1:4840/edge-sim/"
    assert ua["tags"]["good"]["node"] == "nsu=urn:edge-agent:simulator;s=M1.GoodCount"
    assert cfg["machines"]["m1"] == {
        "run": "m1.running",
        "fault": "m1.fault_code",
        "good": "m1.good",
        "total": "m1.total",
        "kpi": {"ideal_cycle_time_s": 0.5},
    }


def test_describe_rtu_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    """Describe --rtu-port emits modbus_rtu blocks; the table lists addresses and node ids."""
    assert main(["describe", "--scenario", "e2e", "--rtu-port", "/dev/ttyUSB0"]) == 0
    out = capsys.readouterr().out
    assert "nsu=urn:edge-agent:simulator;s=M1.FaultCode" in out
    toml_part = out[out.index("## Generated") :]
    dev = tomli.loads(toml_part)["devices"]["m1"]
    assert dev["protocol"] == "modbus_rtu"
    assert dev["serial_port"] == "/dev/ttyUSB0"


def test_bad_scenario_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown scenario is a usage error (exit 2) with a message on stderr."""
    assert main(["describe", "--scenario", "no-such-thing"]) == 2
    assert "no such scenario" in capsys.readouterr().err


@pytest.mark.integration
async def test_run_subprocess_ready_file_and_sigterm(
    sim_process_factory: Callable[..., SimProcess],
) -> None:
    """`run` reports bound ports in the ready file, serves Modbus, and stops cleanly on SIGTERM."""
    sp = await asyncio.to_thread(sim_process_factory, "e2e", speed=10.0)
    assert sp.info["pid"] == sp.pid
    c = AsyncModbusTcpClient("127.0.0.1", port=sp.modbus_port, timeout=1.0, retries=0)
    assert await c.connect()
    try:
        rr = await c.read_holding_registers(0, count=1, device_id=1)
        assert rr.registers == [1]
    finally:
        c.close()
    assert await asyncio.to_thread(sp.stop) == 0
    recs = read_truth(sp.truth_path)
    assert recs[0]["type"] == "start"
    assert recs[-1]["type"] == "stop"
    assert "Modbus TCP listening on 127.0.0.1:" in sp.log_path.read_text()


def _run_sim(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    ready = tmp_path / "ready.json"
    proc = subprocess.run(
        [sys.executable, "-m", "simulators", "run", "--scenario", "steady", "--duration-s", "1",
         "--ready-file", str(ready), "--state-dir", str(tmp_path / "state"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return proc, json.loads(ready.read_text()) if ready.exists() else {}


@pytest.mark.integration
def test_protocols_are_opt_in(tmp_path: Path) -> None:
    """Only the protocols asked for are served: Modbus TCP alone does not open OPC-UA on 4840."""
    proc, info = _run_sim(tmp_path, "--modbus-port", "0")
    assert proc.returncode == 0, proc.stderr
    assert "modbus_tcp" in info
    assert "opcua" not in info
    assert "OPC-UA" not in proc.stdout


@pytest.mark.integration
def test_opcua_is_quiet_by_default_and_talks_with_v(tmp_path: Path) -> None:
    """The asyncua security notices (plaintext password) are hidden unless -v."""
    proc, info = _run_sim(tmp_path, "--opcua-port", "0")
    assert proc.returncode == 0, proc.stderr
    assert "opcua" in info
    assert "modbus_tcp" not in info
    assert proc.stderr == ""
    loud = subprocess.run(
        [sys.executable, "-m", "simulators", "-v", "run", "--scenario", "steady",
         "--duration-s", "1", "--opcua-port", "0", "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert loud.returncode == 0, loud.stderr
    assert "plaintext" in loud.stderr


def test_nothing_asked_for_serves_modbus_tcp_on_the_documented_port() -> None:
    """With no protocol option, run serves Modbus TCP on 5020 (the README's port) only."""
    args = build_parser().parse_args(["run", "--scenario", "steady"])
    _served(args)
    assert (args.modbus_port, args.opcua_port, args.rtu_port) == (5020, None, None)
    args = build_parser().parse_args(["run", "--scenario", "steady", "--opcua-port", "4841"])
    _served(args)
    assert (args.modbus_port, args.opcua_port) == (None, 4841)


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((name, sub))
                out += [(f"{name} {n}", p) for n, p in _subparsers(sub)]
    return out


def test_every_sim_command_has_a_description_and_examples() -> None:
    """edge-agent-sim and each sub-command describe themselves and show examples in --help."""
    parser = build_parser()
    commands = _subparsers(parser)
    assert {name for name, _ in commands} == {"list-scenarios", "describe", "run"}
    for name, sub in [("edge-agent-sim", parser), *commands]:
        assert sub.description, name
        assert "Example" in sub.format_help(), name
