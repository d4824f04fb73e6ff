"""The edge-agent-sim command line: list, describe (TOML is valid), run as a subprocess."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import tomli
from pymodbus.client import AsyncModbusTcpClient

from simulators.cli import main
from simulators.truth import read_truth
from tests.plugins.simulator import SimProcess


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
