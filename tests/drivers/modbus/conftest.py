"""Fixtures for the Modbus driver tests: fake TCP server on port 0, socat pty pair, configs."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from drivers.modbus.config import ModbusDeviceConfig, parse_device
from edge_agent.configkit import Issues, Table
from tests.drivers.modbus.fakeserver import Model, TcpServer


def make_device(name: str = "m1", **data: Any) -> ModbusDeviceConfig:
    """Parse a device table given as keyword arguments; fail the test on config issues."""
    issues = Issues("test.toml")
    device = parse_device(name, Table(data, f"devices.{name}", issues))
    assert not issues.items, [str(i) for i in issues.items]
    return device


def config_issues(data: dict[str, Any], name: str = "m1") -> list[str]:
    """Parse a device table and return the issue texts."""
    issues = Issues("test.toml")
    parse_device(name, Table(data, f"devices.{name}", issues))
    return [str(i) for i in issues.items]


@pytest.fixture
def model() -> Model:
    """An empty fake Modbus memory model."""
    return Model()


@pytest.fixture
async def tcp_server(model: Model) -> AsyncIterator[TcpServer]:
    """A fake Modbus TCP server on 127.0.0.1:<free port>."""
    server = TcpServer(model)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def pty_pair() -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals from socat (stopped by PID afterwards)."""
    if shutil.which("socat") is None:
        pytest.skip("socat not installed")
    proc = subprocess.Popen(
        ["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    paths: list[str] = []
    deadline = time.monotonic() + 5
    assert proc.stderr is not None
    while len(paths) < 2 and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        match = re.search(r"PTY is (\S+)", line)
        if match:
            paths.append(match.group(1))
    try:
        assert len(paths) == 2, "socat did not report two pty paths"
        yield paths[0], paths[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        proc.stderr.close()
