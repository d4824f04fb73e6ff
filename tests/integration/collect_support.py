"""Helpers for the collector's integration tests: a collector process, a publisher, waits.

The collector runs as a real child process (``python -m edge_agent.collect run``) so a
test can SIGKILL it; its stderr is read by a thread so a test can wait for a log line.
The publisher is a paho MQTT 5 client that publishes with QoS 1 and waits for every
PUBACK from the broker. Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion


def collector_toml(
    *,
    dsn: str,
    port: int,
    client_id: str,
    group: str = "",
    max_messages: int = 50,
    max_wait_ms: int = 20,
    heartbeat_s: float = 0.5,
) -> str:
    """A collector config for a private broker on 127.0.0.1."""
    return (
        f'[database]\ndsn = "{dsn}"\nreconnect_min_s = 0.1\nreconnect_max_s = 0.5\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nclient_id = "{client_id}"\n'
        f'shared_group = "{group}"\nreconnect_min_s = 1\nreconnect_max_s = 2\n'
        f"[batch]\nmax_messages = {max_messages}\nmax_wait_ms = {max_wait_ms}\n"
        f"heartbeat_s = {heartbeat_s}\n"
    )


class CollectorProcess:
    """``edge-agent-collect run`` as a child process, stopped by PID."""

    def __init__(self, config: Path, name: str = "collector") -> None:
        self.config = config
        self.name = name
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._cond = threading.Condition()

    def start(self, *, subscribed_within: float = 20.0) -> CollectorProcess:
        """Start and wait until it subscribed (or fail with its output)."""
        mark = self.launch()
        return self.wait_subscribed(mark, subscribed_within)

    def launch(self) -> int:
        """Start without waiting; returns the log mark to pass to :meth:`wait_subscribed`."""
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edge_agent.collect",
                "--log-level",
                "info",
                "run",
                "-c",
                str(self.config),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        with self._cond:
            mark = len(self.lines)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        return mark

    def wait_subscribed(self, mark: int, timeout: float = 20.0) -> CollectorProcess:
        """Wait until the process launched at ``mark`` subscribed (or fail with its output)."""
        if not self.wait_log("Subscribed", timeout, since=mark):
            self.kill()
            raise AssertionError(f"{self.name} did not subscribe:\n{self.output}")
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    @property
    def output(self) -> str:
        """Everything it logged so far."""
        with self._cond:
            return "\n".join(self.lines)

    def wait_log(self, text: str, timeout: float, *, since: int = 0) -> bool:
        """Wait until a log line (from index ``since``) contains ``text``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if any(text in line for line in self.lines[since:]):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))

    def count(self, text: str) -> int:
        """How many log lines contain ``text``."""
        with self._cond:
            return sum(text in line for line in self.lines)

    def kill(self) -> None:
        """SIGKILL (no clean shutdown, nothing acknowledged beyond what was)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM and wait (bounded); returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode)


class Publisher:
    """Publishes (topic, payload) pairs with QoS 1 and waits for the broker's PUBACKs."""

    def __init__(self, port: int, client_id: str = "") -> None:
        self.acked = 0
        self._cond = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.on_publish = self._on_publish
        self.client.max_inflight_messages_set(200)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_publish(self, *_a: Any) -> None:
        with self._cond:
            self.acked += 1
            self._cond.notify_all()

    def publish(self, messages: Iterable[tuple[str, bytes]], timeout: float = 60.0) -> int:
        """Publish all, wait until each was acknowledged by the broker; returns how many."""
        with self._cond:
            start = self.acked
        n = 0
        for topic, payload in messages:
            self.client.publish(topic, payload, qos=1)
            n += 1
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.acked - start < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.acked - start}/{n} PUBACKs within {timeout} s")
                self._cond.wait(min(remaining, 0.5))
        return n

    def close(self) -> None:
        """Disconnect and stop paho's thread."""
        self.client.disconnect()
        self.client.loop_stop()


def query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of one query on a short-lived connection."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(dsn: str, sql: str, *params: Any) -> Any:
    """The first column of the first row."""
    return query(dsn, sql, *params)[0][0]


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll a database condition until it holds (bounded); returns whether it did."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def backend_waiting_on_lock(dsn: str, client_id: str) -> list[int]:
    """PIDs of the collector's backends that are blocked waiting for a lock."""
    name = f"edge-agent-collect/{client_id}"
    rows = query(
        dsn,
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
        name,
    )
    return [int(r[0]) for r in rows]


def backends(dsn: str, client_id: str) -> list[int]:
    """PIDs of the collector's backends."""
    name = f"edge-agent-collect/{client_id}"
    rows = query(dsn, "SELECT pid FROM pg_stat_activity WHERE application_name = %s", name)
    return [int(r[0]) for r in rows]
