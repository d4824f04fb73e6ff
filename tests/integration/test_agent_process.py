"""The agent as systemd runs it: a child process with NOTIFY_SOCKET, signals and reload.

Covers READY=1 and WATCHDOG=1 over a real AF_UNIX datagram socket, watchdog
pings stopping while the event loop is blocked, SIGTERM (exit 0 within 5 s
with the buffer flushed) and SIGHUP reload (device added, device removed,
invalid file rejected while the old configuration keeps running).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.broker import Mosquitto
from tests.plugins.simulator import SimProcess

pytestmark = pytest.mark.integration

HEADER = """
[agent]
id = "proc-gw"
site = "test"
state_dir = "{state}"
log_level = "info"
status_interval_s = 0.5

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}

[reporting]
interval_s = 1.0
"""

DEVICE = """
[devices.{name}]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:{port}"
unit_id = 1
interval_ms = 200
addressing = "zero"

[devices.{name}.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.{name}.tags.good]
table = "holding"
address = 10
type = "uint32"
"""


MACHINE = """
[machines.{name}]
run = "{name}.running"
good = "{name}.good"
total = "{name}.good"

[machines.{name}.kpi]
ideal_cycle_time_s = 2.0
max_gap_s = {max_gap_s}

[[machines.{name}.kpi.shifts]]
name = "all"
start = "00:00"
end = "00:00"
"""


class Agent:
    """A running agent child process and what it told systemd."""

    def __init__(
        self, config: Path, state: Path, notify_path: Path, extra_env: dict[str, str]
    ) -> None:
        self.config, self.state = config, state
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(notify_path))
        self.sock.settimeout(0.2)
        self.log = (state.parent / "agent.log").open("wb")
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(notify_path),
            "PYTHONUNBUFFERED": "1",
            **extra_env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "-c", str(config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.messages: list[tuple[float, str]] = []

    def read_notify(self, seconds: float) -> list[tuple[float, str]]:
        """Collect notify datagrams for a bounded time."""
        got: list[tuple[float, str]] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                data = self.sock.recv(4096)
                got.append((time.monotonic(), data.decode()))
        self.messages += got
        return got

    def wait_notify(self, predicate: Callable[[str], bool], timeout: float) -> bool:
        """Wait (bounded) for a datagram matching predicate."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(predicate(m) for _, m in self.read_notify(0.2)):
                return True
            if self.proc.poll() is not None:
                return False
        return False

    def status(self) -> dict[str, Any]:
        """The agent's status.json (empty dict while not yet written)."""
        try:
            return json.loads((self.state / "status.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        """Wait (bounded) until status.json satisfies predicate; return it."""
        deadline = time.monotonic() + timeout
        snap: dict[str, Any] = {}
        while time.monotonic() < deadline and self.proc.poll() is None:
            snap = self.status()
            if snap and predicate(snap):
                return snap
            time.sleep(0.1)
        raise AssertionError(
            f"status condition not met; last status devices={snap.get('devices')}\n{self.output()}"
        )

    def output(self) -> str:
        """What the agent logged."""
        self.log.flush()
        return (self.state.parent / "agent.log").read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        """SIGTERM and wait (bounded); kill if it does not exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.sock.close()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def sims(sim_process_factory: Callable[..., SimProcess]) -> tuple[SimProcess, SimProcess]:
    """Two simulator processes on two ports, so two devices live on two independent links."""
    return sim_process_factory("steady"), sim_process_factory("steady")


@pytest.fixture
def agent_factory(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Callable[..., Agent]]:
    """Start agents with a config built from device blocks; stop them all afterwards."""
    started: list[Agent] = []

    def make(
        devices: list[tuple[str, int]],
        extra_env: dict[str, str] | None = None,
        machines: tuple[str, ...] = (),
        max_gap_s: float = 2.0,
    ) -> Agent:
        state = tmp_path / "state"
        config = tmp_path / "agent.toml"
        write_config(config, state, mosquitto.port, devices, machines, max_gap_s)
        sock = tmp_path / "notify.sock"
        sock.unlink(missing_ok=True)
        agent = Agent(config, state, sock, extra_env or {})
        started.append(agent)
        return agent

    yield make
    for agent in started:
        agent.stop()


def write_config(
    path: Path,
    state: Path,
    mqtt_port: int,
    devices: list[tuple[str, int]],
    machines: tuple[str, ...] = (),
    max_gap_s: float = 2.0,
) -> None:
    """Write an agent config with the given (name, port) devices and machines on them."""
    text = HEADER.format(state=state, mqtt_port=mqtt_port)
    text += "".join(DEVICE.format(name=n, port=p) for n, p in devices)
    text += "".join(MACHINE.format(name=n, max_gap_s=max_gap_s) for n in machines)
    path.write_text(text)


def test_ready_and_watchdog_pings_stop_when_the_loop_blocks(
    sims: tuple[SimProcess, SimProcess], agent_factory: Callable[..., Agent]
) -> None:
    """READY=1 arrives, WATCHDOG=1 comes periodically and stops while the loop is frozen."""
    agent = agent_factory(
        [("a", sims[0].modbus_port)],
        {"WATCHDOG_USEC": "600000", "EDGE_AGENT_DEBUG_FREEZE_S": "2.5"},
    )
    assert agent.wait_notify(lambda m: "READY=1" in m, 20), agent.output()
    pings = [t for t, m in agent.read_notify(2.0) if "WATCHDOG=1" in m]
    assert len(pings) >= 4  # every 0.3 s
    agent.proc.send_signal(signal.SIGUSR2)
    frozen_at = time.monotonic()
    during = [t for t, m in agent.read_notify(2.0) if "WATCHDOG=1" in m and t - frozen_at > 0.4]
    assert during == []
    after = [t for t, m in agent.read_notify(2.5) if "WATCHDOG=1" in m]
    assert after, "pings did not resume after the freeze"
    assert agent.stop() == 0


def test_sigterm_stops_within_five_seconds_with_buffer_flushed(
    sims: tuple[SimProcess, SimProcess], agent_factory: Callable[..., Agent]
) -> None:
    """SIGTERM exits 0 within 5 s, and the readings taken up to the stop are in the database."""
    agent = agent_factory([("a", sims[0].modbus_port)])
    agent.wait_status(lambda s: s["devices"]["a"]["comms"] == "up", 20)
    time.sleep(1.0)
    stop_at = time.time()
    agent.proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    code = agent.proc.wait(10)
    assert time.monotonic() - t0 < 5.0
    assert code == 0, agent.output()
    assert any("STOPPING=1" in m for _, m in agent.read_notify(0.3) + agent.messages)
    db = sqlite3.connect(agent.state / "buffer.db")
    last = db.execute(
        "SELECT max(f.ts) FROM frames f JOIN layouts l ON l.id = f.layout WHERE l.device = 'a'"
    ).fetchone()[0]
    db.close()
    # Polling every 200 ms: the last reading is from just before the stop.
    assert last is not None
    assert last > stop_at - 1.0


def test_sighup_adds_and_removes_devices_and_rejects_invalid_files(
    sims: tuple[SimProcess, SimProcess], agent_factory: Callable[..., Agent], mosquitto: Mosquitto
) -> None:
    """Reload adds b without restarting a's link, removes a, and survives an invalid file."""
    port_a, port_b = sims[0].modbus_port, sims[1].modbus_port
    agent = agent_factory([("a", port_a)])
    snap = agent.wait_status(lambda s: s["devices"]["a"]["diagnostics"].get("requests", 0) > 3, 20)
    requests_before = snap["devices"]["a"]["diagnostics"]["requests"]

    write_config(agent.config, agent.state, mosquitto.port, [("a", port_a), ("b", port_b)])
    agent.proc.send_signal(signal.SIGHUP)
    snap = agent.wait_status(
        lambda s: "b" in s["devices"] and s["devices"]["b"]["comms"] == "up", 20
    )
    # a's link kept running: its request counter continued instead of starting over.
    assert snap["devices"]["a"]["diagnostics"]["requests"] >= requests_before

    write_config(agent.config, agent.state, mosquitto.port, [("b", port_b)])
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_status(lambda s: set(s["devices"]) == {"b"}, 20)

    agent.config.write_text(
        agent.config.read_text().replace("interval_ms = 200", "interval_ms = -5")
    )
    agent.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "Reload rejected" not in agent.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Reload rejected" in agent.output()
    assert "devices.b.interval_ms" in agent.output()
    assert agent.proc.poll() is None
    written = agent.status()["written_at"]
    agent.wait_status(
        lambda s: s["written_at"] > written and s["devices"]["b"]["comms"] == "up", 10
    )
    assert agent.stop() == 0


def test_sighup_keeps_a_machine_with_an_unchanged_profile_without_unknown_time(
    sims: tuple[SimProcess, SimProcess], agent_factory: Callable[..., Agent], mosquitto: Mosquitto
) -> None:
    """Reloads that leave machine a's KPI profile unchanged add no unknown time to its day.

    First the machine is unchanged (a device is added), then its run signal becomes an
    expression: both keep the live calculator. ``max_gap_s`` is raised so a slow poll on
    a loaded machine cannot add unknown time; a calculator rebuilt from its saved state
    would (the time since the last save).
    """
    port_a, port_b = sims[0].modbus_port, sims[1].modbus_port
    agent = agent_factory([("a", port_a)], machines=("a",), max_gap_s=10.0)
    agent.wait_status(lambda s: _today(s).get("running_time_s", 0) > 2.0, 30)

    def reload_and_compare(devices: list[tuple[str, int]], edit: Callable[[str], str]) -> None:
        written = agent.status()["written_at"]
        before = _today(agent.wait_status(lambda s: s["written_at"] > written + 1.5, 10))
        write_config(agent.config, agent.state, mosquitto.port, devices, ("a",), 10.0)
        agent.config.write_text(edit(agent.config.read_text()))
        agent.proc.send_signal(signal.SIGHUP)
        snap = agent.wait_status(lambda s: set(s["devices"]) == {d for d, _ in devices}, 20)
        written = snap["written_at"]
        after = _today(agent.wait_status(lambda s: s["written_at"] > written + 3.0, 10))
        assert after["window"] == before["window"]
        assert after["running_time_s"] > before["running_time_s"] + 2.0
        assert after["unknown_time_s"] == before["unknown_time_s"], agent.output()

    both = [("a", port_a), ("b", port_b)]
    reload_and_compare(both, lambda text: text)
    assert "Configuration reloaded devices=2 machines=1" in agent.output()
    as_expr = 'run = { expr = "a.running == true" }'
    reload_and_compare(both, lambda text: text.replace('run = "a.running"', as_expr))
    assert "Machine updated, calculator kept machine=a" in agent.output()
    assert agent.stop() == 0


def _today(snap: dict[str, Any]) -> dict[str, Any]:
    return (snap["machines"].get("a") or {}).get("today") or {}


def test_restart_after_sigkill_resumes_windows_and_counts_the_gap_as_unknown(
    sims: tuple[SimProcess, SimProcess], agent_factory: Callable[..., Agent]
) -> None:
    """After kill -9 and a restart the day window continues; the agent's outage is unknown time."""
    agent = agent_factory([("a", sims[0].modbus_port)], machines=("a",))
    first = agent.wait_status(lambda s: _today(s).get("running_time_s", 0) > 2.0, 30)
    unknown_before = _today(first)["unknown_time_s"]
    running_before = _today(first)["running_time_s"]
    time.sleep(1.5)  # another report interval: the calculator state is saved
    agent.proc.kill()
    agent.proc.wait(5)
    killed_at = time.time()
    time.sleep(3.0)
    restarted = agent_factory([("a", sims[0].modbus_port)], machines=("a",))
    restarted_at = time.time()
    snap = restarted.wait_status(
        lambda s: (
            _today(s).get("unknown_time_s", 0) > unknown_before + 1.0
            and s["machines"]["a"]["state"] == "running"
        ),
        30,
    )
    today = _today(snap)
    gap = restarted_at - killed_at
    added_unknown = today["unknown_time_s"] - unknown_before
    # The outage (kill -> restart, plus start-up) is unknown; at most the unsaved tail
    # before the kill (one report interval) and the start-up time come on top.
    assert gap - 0.5 <= added_unknown <= gap + 6.0
    # The running time measured before the kill was restored from the saved state.
    assert today["running_time_s"] >= running_before
    assert restarted.stop() == 0


def test_status_tells_a_clean_stop_from_a_crash(
    sims: tuple[SimProcess, SimProcess],
    agent_factory: Callable[..., Agent],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After SIGTERM `edge-agent status` says 'stopped cleanly' (4); after kill -9 'crashed' (3)."""
    from edge_agent.cli import main

    agent = agent_factory([("a", sims[0].modbus_port)])
    agent.wait_status(lambda s: s["devices"]["a"]["comms"] == "up", 20)
    assert agent.stop() == 0
    journal = (agent.state.parent / "agent.log").read_text()
    assert "Device connected device=a link=" in journal
    assert main(["status", "--state-dir", str(agent.state)]) == 4
    assert "Agent stopped cleanly at " in capsys.readouterr().out

    restarted = agent_factory([("a", sims[0].modbus_port)])
    restarted.wait_status(
        lambda s: "stopped_at" not in s and s["devices"]["a"]["comms"] == "up", 20
    )
    restarted.proc.kill()
    restarted.proc.wait(5)
    time.sleep(2.0)  # older than three status intervals (0.5 s)
    assert main(["status", "--state-dir", str(restarted.state)]) == 3
    assert "AGENT NOT RUNNING (crashed?)" in capsys.readouterr().out
