"""The real agent process speaks the Type=notify protocol to a fake systemd socket.

``edge-agent run`` is started the way systemd starts it (``NOTIFY_SOCKET``,
``WATCHDOG_USEC``, ``WATCHDOG_PID``), with a PLC and a broker that refuse
connections on loopback: the agent must still become ready, feed the
watchdog, write its status snapshot, handle SIGHUP as a reload and SIGTERM as
a clean stop. The health messages it queued meanwhile must match
``schemas/health.schema.json``.
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
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource

from edge_agent.buffer.outbox import OutboxRow
from edge_agent.uplink.payload import envelope

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[3]


def _refused_port() -> int:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


CONFIG = """\
[agent]
id = "gw-ops-test"
site = "lab"
state_dir = "state"
status_interval_s = 0.5

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}

[health]
interval_s = 1.0

[devices.plc1]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:{plc_port}"
unit_id = 1
interval_ms = 500
addressing = "zero"

[devices.plc1.tags.running]
table = "coil"
address = 0
type = "bool"
"""


class NotifySocket:
    """The systemd end of NOTIFY_SOCKET: a datagram socket the test reads with deadlines."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.received: list[str] = []

    def expect(self, predicate_text: str, timeout: float) -> list[str]:
        """Read until a datagram contains ``predicate_text``; return everything read meanwhile."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            seen.append(message)
            self.received.append(message)
            if predicate_text in message.split("\n"):
                return seen
        raise AssertionError(f"no {predicate_text!r} within {timeout}s; got {seen}")


@pytest.fixture
def agent_dir() -> Iterator[Path]:
    # Short path: AF_UNIX socket paths are limited to 108 bytes.
    with tempfile.TemporaryDirectory(prefix="ops-", dir="/tmp") as tmp:
        path = Path(tmp)
        (path / "agent.toml").write_text(
            CONFIG.format(mqtt_port=_refused_port(), plc_port=_refused_port())
        )
        yield path


def _health_validator() -> jsonschema.Draft202012Validator:
    docs = [json.loads(p.read_text()) for p in (ROOT / "schemas").glob("*.schema.json")]
    registry: Registry = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in docs
    )
    schema = json.loads((ROOT / "schemas" / "health.schema.json").read_text())
    return jsonschema.Draft202012Validator(
        schema, registry=registry, format_checker=jsonschema.FormatChecker()
    )


def _status(state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "status", "--state-dir", str(state_dir), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_agent_speaks_notify_protocol(agent_dir: Path) -> None:
    """READY, watchdog pings, status snapshot, reload on SIGHUP and STOPPING on SIGTERM all work."""
    notify = NotifySocket(str(agent_dir / "notify"))
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(agent_dir / "notify"),
        "WATCHDOG_USEC": "1000000",  # 1 s: pings every 0.5 s
    }
    # The log goes to a file, not a pipe nobody drains (a full pipe would block the agent).
    log = (agent_dir / "agent.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "-c", str(agent_dir / "agent.toml")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        ready = notify.expect("READY=1", timeout=30)
        assert any(line.startswith("STATUS=") for m in ready for line in m.split("\n"))
        started = time.monotonic()
        pings = 0
        while pings < 3:
            notify.expect("WATCHDOG=1", timeout=2.0)
            pings += 1
        # Three pings at a 0.5 s period take about 1-1.5 s, far less than the 1 s timeout each.
        assert time.monotonic() - started < 4.0

        snapshot_path = agent_dir / "state" / "status.json"
        deadline = time.monotonic() + 10
        while not snapshot_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        shown = _status(agent_dir / "state")
        assert shown.returncode == 0, shown.stderr
        snapshot = json.loads(shown.stdout)
        assert snapshot["agent"]["pid"] == proc.pid
        assert "plc1" in snapshot["devices"]

        proc.send_signal(signal.SIGHUP)
        reload_seen = notify.expect("RELOADING=1", timeout=10)
        assert any("MONOTONIC_USEC=" in m for m in reload_seen)
        notify.expect("READY=1", timeout=10)

        proc.send_signal(signal.SIGTERM)
        notify.expect("STOPPING=1", timeout=15)
        assert proc.wait(timeout=20) == 0, (agent_dir / "agent.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        notify.sock.close()

    # The health messages it queued (the broker refused, so they wait in the outbox)
    # are valid against schemas/health.schema.json, as the uplink would publish them.
    validator = _health_validator()
    db = f"file:{agent_dir / 'state' / 'buffer.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(db, uri=True)) as con:
        rows = con.execute(
            "SELECT seq, kind, priority, topic, data, created, retain FROM outbox "
            "WHERE kind = 'health' ORDER BY seq"
        ).fetchall()
    assert rows, "no health message was queued"
    for seq, kind, priority, topic, data, created, retain in rows:
        row = OutboxRow(
            seq=seq,
            kind=kind,
            priority=priority,
            topic=topic,
            data=data,
            created=created,
            retain=bool(retain),
        )
        message = json.loads(envelope(row, "gw-ops-test", "0a1b2c3d"))
        validator.validate(message)
        assert message["data"]["uplink"]["connected"] is False

    # Once the agent is gone the snapshot is stale, but the agent marked it on its clean way
    # out: status says it stopped cleanly (exit 4), not "not running or hung" (exit 3).
    time.sleep(1.6)  # > 3 x status_interval_s: the staleness threshold itself is under test
    stale = _status(agent_dir / "state")
    assert stale.returncode == 4
    assert "stopped cleanly" in stale.stderr
