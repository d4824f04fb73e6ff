"""Fixture plugin: bundled PLC simulators, in-process and as a subprocess, plus an RTU pty pair.

Fixtures (all on free loopback ports, nothing fixed):

* ``sim_factory``: ``await sim_factory("steady", manual=True, modbus=True, opcua=False, ...)``
  starts a :class:`simulators.host.SimulatorHost` in the test's event loop and stops it at
  teardown. ``manual=True`` (default) drives it with a ManualClock: call
  ``await sim.advance(dt)`` instead of sleeping.
* ``simulator``: the ``steady`` scenario, manual clock, Modbus TCP on 127.0.0.1:0.
* ``sim_process_factory``: ``sim_process_factory("demo", speed=60, opcua=True)`` starts
  ``python -m simulators run`` as a subprocess, waits (bounded) for its ready file and returns
  a :class:`SimProcess` (pid, ready info, truth path). Stopped by PID (SIGTERM, then SIGKILL).
* ``rtu_pty_pair``: ``(server_path, client_path)`` of a ``socat`` pseudo-terminal pair; skips
  with a clear reason when socat is missing; socat is stopped by PID.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from simulators.clock import ManualClock
from simulators.host import SimulatorHost

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0

SimFactory = Callable[..., Awaitable[SimulatorHost]]


@pytest.fixture
async def sim_factory(tmp_path: Path) -> AsyncIterator[SimFactory]:
    """Start in-process simulators; every one is stopped at teardown."""
    started: list[SimulatorHost] = []

    async def make(
        scenario: Any = "steady",
        *,
        manual: bool = True,
        speed: float = 1.0,
        seed: int = 1,
        modbus: bool = True,
        opcua: bool = False,
        rtu_port: str | None = None,
        truth_path: Path | None = None,
        **kwargs: Any,
    ) -> SimulatorHost:
        clock = ManualClock(speed=speed) if manual else None
        host = SimulatorHost(
            scenario,
            speed=speed,
            seed=seed,
            clock=clock,
            modbus_tcp=("127.0.0.1", 0) if modbus else None,
            opcua=("127.0.0.1", 0) if opcua else None,
            rtu_port=rtu_port,
            truth_path=truth_path,
            state_dir=kwargs.pop("state_dir", tmp_path / "sim-state"),
            **kwargs,
        )
        await host.start()
        started.append(host)
        return host

    yield make
    for host in reversed(started):
        await host.stop()


@pytest.fixture
async def simulator(sim_factory: SimFactory) -> SimulatorHost:
    """The ``steady`` scenario on Modbus TCP with a manual clock."""
    return await sim_factory("steady")


@dataclass
class SimProcess:
    """A simulator subprocess started by ``sim_process_factory``."""

    proc: subprocess.Popen[bytes]
    info: dict[str, Any]
    truth_path: Path
    ready_path: Path
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        """Process id."""
        return self.proc.pid

    @property
    def modbus_port(self) -> int:
        """Bound Modbus TCP port."""
        return int(self.info["modbus_tcp"]["port"])

    @property
    def opcua_endpoint(self) -> str:
        """OPC-UA endpoint URL."""
        return str(self.info["opcua"]["endpoint"])

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM by PID, wait (bounded), SIGKILL if needed; returns the exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout_s)
        return int(self.proc.returncode)


@pytest.fixture
def sim_process_factory(tmp_path: Path) -> Iterator[Callable[..., SimProcess]]:
    """Start ``edge-agent-sim run`` subprocesses; each is stopped by PID at teardown."""
    started: list[SimProcess] = []

    def make(
        scenario: str = "steady",
        *,
        speed: float = 1.0,
        seed: int = 1,
        modbus: bool = True,
        opcua: bool = False,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> SimProcess:
        n = len(started)
        ready = tmp_path / f"sim{n}.ready.json"
        truth = tmp_path / f"sim{n}.truth.jsonl"
        log = tmp_path / f"sim{n}.log"
        cmd = [
            sys.executable,
            "-m",
            "simulators",
            "run",
            "--scenario",
            scenario,
            "--host",
            "127.0.0.1",
            "--modbus-port",
            "0" if modbus else "off",
            "--opcua-port",
            "0" if opcua else "off",
            "--speed",
            str(speed),
            "--seed",
            str(seed),
            "--truth",
            str(truth),
            "--ready-file",
            str(ready),
            "--state-dir",
            str(tmp_path / f"sim{n}-state"),
            *(extra_args or []),
        ]
        full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, env=full_env
            )
        sp = SimProcess(proc=proc, info={}, truth_path=truth, ready_path=ready, log_path=log)
        started.append(sp)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"simulator exited with {proc.returncode}: {log.read_text()}")
            if time.monotonic() > deadline:
                sp.stop()
                raise RuntimeError(
                    f"simulator not ready after {READY_TIMEOUT_S} s: {log.read_text()}"
                )
            time.sleep(0.05)
        sp.info = json.loads(ready.read_text())
        return sp

    yield make
    for sp in reversed(started):
        sp.stop()


_PTY_RE = re.compile(rb"PTY is (\S+)")


@pytest.fixture
def rtu_pty_pair() -> Iterator[tuple[str, str]]:
    """A socat pseudo-terminal pair ``(server_path, client_path)``, stopped by PID."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("socat is not installed (apt-get install socat): no pty pair for Modbus RTU")
    proc = subprocess.Popen(
        [socat, "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    paths: list[str] = []
    deadline = time.monotonic() + 10.0
    while len(paths) < 2 and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = _PTY_RE.search(line)
        if m:
            paths.append(m.group(1).decode())
    try:
        if len(paths) < 2:
            pytest.fail("socat did not report two pty paths within 10 s")
        yield paths[0], paths[1]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        proc.stderr.close()
