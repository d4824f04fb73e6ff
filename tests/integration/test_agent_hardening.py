"""The agent process against hostile configuration reloads, and the permissions of its files.

A real ``edge-agent run`` child process (no mocks). Its device and broker are
closed loopback ports: what is under test does not need them to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.drivers.modbus.fakeserver import GARBLES, Model, TcpServer, Unit
from tests.plugins.broker import Mosquitto, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[agent]
id = "hard-gw"
site = "test"
state_dir = "{state}"
status_interval_s = 0.5

[mqtt]
port = {mqtt}

[devices.plc]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:{plc}"
unit_id = 1
addressing = "zero"
interval_ms = 500

[devices.plc.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.plc.tags.count]
table = "holding"
address = 4
type = "uint32"

[machines.m1]
run = {{ expr = "plc.running" }}
good = "plc.count"
total = "plc.count"

[machines.m1.kpi]
ideal_cycle_time_s = 2.0
"""


class AgentProcess:
    """``edge-agent run -c`` as a child process, its output in a file."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        umask: int = 0o022,
        mqtt_port: int | None = None,
        plc_port: int | None = None,
    ) -> None:
        self.state = tmp_path / "state"
        self.config = tmp_path / "agent.toml"
        self.valid = CONFIG.format(
            state=self.state, mqtt=mqtt_port or free_port(), plc=plc_port or free_port()
        )
        self.config.write_text(self.valid)
        self.log_path = tmp_path / "agent.log"
        self._log = self.log_path.open("wb")

        def set_umask() -> None:
            os.umask(umask)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "-c", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=set_umask,  # noqa: PLW1509 - only os.umask, before exec
        )

    def output(self) -> str:
        """Everything the agent logged so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait (bounded) for a condition while the agent is alive."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None, f"agent exited ({what}):\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"timed out: {what}\n{self.output()[-3000:]}"
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM, wait (bounded), return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess(tmp_path)
    try:
        yield proc
    finally:
        proc.stop()


HOSTILE = (
    "toml nested 2,000 deep",
    "protocol = []",
    "NUL in state_dir",
    "250 parentheses",
    "file of 17 MiB",
)


def hostile_text(name: str, valid: str) -> str | bytes:
    if name == "toml nested 2,000 deep":
        return valid + "\n[x]\na = " + "[" * 2000 + "]" * 2000 + "\n"
    if name == "protocol = []":
        return valid.replace('protocol = "modbus_tcp"', "protocol = []")
    if name == "NUL in state_dir":
        return valid.replace('state_dir = "', 'state_dir = "\\u0000')
    if name == "250 parentheses":
        return valid.replace('"plc.running"', '"' + "(" * 250 + "plc.running" + ")" * 250 + '"')
    return valid.encode() + b"#" * (17 * 1024 * 1024)


def test_sighup_with_hostile_files_keeps_the_running_configuration(agent: AgentProcess) -> None:
    """Each hostile file is rejected on SIGHUP, the agent keeps running and exits 0 on SIGTERM."""
    status = agent.state / "status.json"
    agent.wait_for(status.exists, 30, "status.json written")
    for n, name in enumerate(HOSTILE, start=1):
        text = hostile_text(name, agent.valid)
        if isinstance(text, bytes):
            agent.config.write_bytes(text)
        else:
            agent.config.write_text(text)
        agent.proc.send_signal(signal.SIGHUP)
        agent.wait_for(
            lambda n=n: agent.output().count("Reload rejected") >= n, 20, f"reload of {name}"
        )
    assert "Traceback" not in agent.output()
    agent.config.write_text(agent.valid)
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_for(lambda: "Configuration reloaded" in agent.output(), 20, "valid reload")
    written = status.stat().st_mtime
    agent.wait_for(lambda: status.stat().st_mtime > written, 10, "status still written")
    assert agent.stop() == 0, agent.output()[-3000:]


def test_files_the_agent_creates_are_not_world_readable_under_umask_022(tmp_path: Path) -> None:
    """Started with umask 022, the agent still creates its state as 0750/0640 (umask 027)."""
    agent = AgentProcess(tmp_path, umask=0o022)
    try:
        files = [agent.state / n for n in ("buffer.db", "buffer.db.seq", "status.json")]
        agent.wait_for(lambda: all(f.exists() for f in files), 30, "state files created")
        created = [agent.state, *files, *agent.state.glob("buffer.db-*")]
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in created}
    finally:
        assert agent.stop() == 0
    assert all(mode & 0o007 == 0 for mode in modes.values()), {k: oct(v) for k, v in modes.items()}
    assert modes["state"] & 0o020 == 0  # not group-writable either


@contextlib.contextmanager
def garbage_plc() -> Iterator[tuple[TcpServer, Unit]]:
    """The fake Modbus TCP server on its own event loop thread (the agent is another process)."""
    model = Model()
    unit = model.unit(1)
    server = TcpServer(model)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="garbage-plc", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
        yield server, unit
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_a_garbage_speaking_plc_puts_no_error_or_traceback_in_the_log(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Each malformed answer in turn: one warning per condition, no ERROR, no traceback."""
    tcp_garbles = [g for g in GARBLES if g != "bad_crc"]
    with garbage_plc() as (server, unit):
        agent = AgentProcess(tmp_path, mqtt_port=mosquitto.port, plc_port=server.port)
        try:
            status = agent.state / "status.json"
            agent.wait_for(status.exists, 30, "status.json written")
            for garble in tcp_garbles:
                unit.garble = garble
                requests = server.model.count(1)
                agent.wait_for(lambda r=requests: server.model.count(1) >= r + 3, 10, garble)
            unit.garble = None
            agent.wait_for(
                lambda: "answers validly again" in agent.output(), 10, "valid answers again"
            )
            snap = json.loads(status.read_text())
        finally:
            code = agent.stop()
    log = agent.output()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log
    errors = [line for line in log.splitlines() if line.startswith(("ERROR", "CRITICAL"))]
    assert errors == []
    warnings = [line for line in log.splitlines() if "sends invalid responses" in line]
    assert 1 <= len(warnings) <= len(tcp_garbles)
    assert snap["devices"]["plc"]["diagnostics"]["errors"]["invalid_response"] >= 3
