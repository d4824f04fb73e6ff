"""Evidence end to end: simulator -> agent (two kill -9, a broker outage) -> Mosquitto -> capture.

The agent runs as a child process against the bundled simulator (``microstops``
scenario at 20x: a stop every few seconds, each a chained start and end record) and a
private Mosquitto with persistence; a subscriber with a persistent session saves every
message as JSON lines (topic and payload, like ``mosquitto_sub -F %j``). The agent is
SIGKILLed twice and the broker is stopped for a few seconds in between. Then
``edge-agent verify`` on the capture must pass, and must fail naming the message when
one digit of one saved message is flipped. The evidence kinds as published validate
against their schemas.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.cli import main
from tests.plugins.broker import MosquittoFactory, MqttCollector
from tests.plugins.simulator import SimProcess

from ..edge_agent.uplink.schemas import validate

pytestmark = pytest.mark.integration

SPEED = 20.0

CONFIG = """
[agent]
id = "evidence-gw"
site = "e2e"
state_dir = "{state}"
log_level = "info"
status_interval_s = 0.5

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
probe_interval_s = 1
reconnect_min_s = 0.2
ack_timeout_s = 5

[reporting]
interval_s = 1.0
allowed_lateness_s = 1.0
windows = ["hour"]
contract_start = {contract_start}
contract_end = {contract_end}

[devices.m1]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:{modbus_port}"
unit_id = 1
interval_ms = 200
addressing = "zero"

[devices.m1.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.m1.tags.fault_code]
table = "holding"
address = 2
type = "uint16"

[devices.m1.tags.good]
table = "holding"
address = 10
type = "uint32"

[devices.m1.tags.total]
table = "holding"
address = 14
type = "uint32"

[machines.m1]
run = "m1.running"
fault = "m1.fault_code"
good = "m1.good"
total = "m1.total"

[machines.m1.kpi]
ideal_cycle_time_s = 0.075
micro_stop_threshold_s = 6.0
max_gap_s = 5.0
"""


def _spawn(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", str(config)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    return int(proc.returncode)


def _docs(collector: MqttCollector) -> list[dict[str, Any]]:
    out = []
    for m in collector.snapshot():
        if m.payload.startswith(b"{"):
            out.append(m.json())
    return out


def _final_contract(collector: MqttCollector) -> bool:
    return any(
        d.get("kind") == "kpi"
        and str(d["data"].get("window", "")).startswith("contract:")
        and d["data"].get("final")
        for d in _docs(collector)
    )


def _up_again(collector: MqttCollector) -> bool:
    """The third run is past its start: a chained record after its config record arrived.

    (Its signal handlers are in place by then, so SIGTERM is a clean stop.)
    """
    docs = _docs(collector)
    starts = sorted(d["seq"] for d in docs if d.get("kind") == "config")
    if len(starts) < 3:
        return False
    return any(d.get("seq", 0) > starts[2] and "prev" in d.get("proof", {}) for d in docs)


def _wait(predicate: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(
        f"timed out waiting for {what}; agent log:\n{log.read_text(errors='replace')[-3000:]}"
    )


def test_capture_through_kills_and_an_outage_verifies(
    tmp_path: Path,
    mosquitto_factory: MosquittoFactory,
    sim_process_factory: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After two kill -9 and a broker outage the capture verifies; a flipped digit is named."""
    sim: SimProcess = sim_process_factory("microstops", speed=SPEED)
    broker = mosquitto_factory(persistence=True)
    state = tmp_path / "state"
    start = time.time()
    contract_start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + 2))
    contract_end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + 35))
    config = tmp_path / "agent.toml"
    config.write_text(
        CONFIG.format(
            state=state,
            mqtt_port=broker.port,
            modbus_port=sim.modbus_port,
            contract_start=contract_start,
            contract_end=contract_end,
        )
    )
    log = tmp_path / "agent.log"
    capture = tmp_path / "capture.jsonl"
    with MqttCollector(
        "127.0.0.1", broker.port, "edge/#", client_id="evidence-capture", clean=False
    ) as collector:

        def chained() -> int:
            return sum(1 for d in _docs(collector) if "prev" in d.get("proof", {}))

        def more(than: int) -> bool:
            return chained() >= than + 3  # a config record and at least one stop (two)

        proc = _spawn(config, log)
        try:
            _wait(lambda: more(0), 40, "the first chained records", log)
            _kill9(proc)
            before = chained()
            proc = _spawn(config, log)
            _wait(lambda: more(before), 40, "records after the first restart", log)
            broker.stop()
            time.sleep(4)  # the agent keeps computing; records wait in its outbox
            before = chained()
            broker.start()
            _wait(lambda: more(before), 40, "records after the outage", log)
            _kill9(proc)
            proc = _spawn(config, log)
            _wait(
                lambda: _final_contract(collector) and _up_again(collector),
                90,
                "the final contract record and a record of the third run",
                log,
            )
        finally:
            code = _stop(proc)
        time.sleep(1.0)  # the last acknowledged messages reach the subscriber
        with capture.open("w") as fh:
            for m in collector.snapshot():
                record = {"topic": m.topic, "qos": 1, "payload": m.payload.decode()}
                fh.write(json.dumps(record) + "\n")
    assert code == 0
    docs = [json.loads(json.loads(line)["payload"]) for line in capture.read_text().splitlines()]
    for doc in docs:
        if doc.get("kind") in ("config", "key", "gap"):
            validate(doc)
    kinds = {d["kind"] for d in docs}
    assert {"config", "key", "kpi", "stop"} <= kinds
    assert sum(1 for d in docs if d["kind"] == "config") >= 3  # one per start
    key = subprocess.run(
        [sys.executable, "-m", "edge_agent", "key", "show", "--pem", "--state-dir", str(state)],
        capture_output=True,
        check=True,
    ).stdout
    pem = tmp_path / "device.pem"
    pem.write_bytes(key)
    assert main(["verify", str(capture), "--key", str(pem)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "RESULT: VERIFIED" in out
    # Flip one digit of one saved KPI record.
    lines = capture.read_text().splitlines()
    target = next(
        i
        for i, line in enumerate(lines)
        if '\\"kind\\":\\"kpi\\"' in line and '\\"final\\":true' in line
    )
    record = json.loads(lines[target])
    payload = record["payload"]
    at = payload.index('"total_count":') + len('"total_count":')
    record["payload"] = payload[:at] + str((int(payload[at]) + 1) % 10) + payload[at + 1 :]
    lines[target] = json.dumps(record)
    capture.write_text("\n".join(lines) + "\n")
    assert main(["verify", str(capture), "--key", str(pem)]) == 1
    out = capsys.readouterr().out
    assert f"capture.jsonl line {target + 1}" in out
    assert "[altered]" in out
