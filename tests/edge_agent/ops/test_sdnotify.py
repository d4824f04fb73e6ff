"""sd_notify against a real AF_UNIX datagram socket the test listens on, and the watchdog loop."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.ops import sdnotify


class Listener:
    """A NOTIFY_SOCKET stand-in: receives datagrams on a thread, with arrival times."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, count: int, timeout: float = 2.0) -> list[str]:
        """Wait (bounded) until ``count`` datagrams arrived; return all texts so far."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        return [m for _, m in self.messages]

    def close(self) -> None:
        """Stop the receiver thread and close the socket."""
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    # A short directory: AF_UNIX paths are limited to 108 bytes, pytest's tmp_path may be longer.
    with tempfile.TemporaryDirectory(prefix="sdn-", dir="/tmp") as tmp:
        path = str(Path(tmp) / "notify")
        lst = Listener(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        try:
            yield lst
        finally:
            lst.close()


def test_notify_without_systemd_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NOTIFY_SOCKET every call returns False and nothing raises."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready("x") is False
    assert sdnotify.stopping() is False


def test_ready_with_status_reaches_the_socket(listener: Listener) -> None:
    """ready() sends READY=1 and the status line in one datagram to a filesystem socket."""
    assert sdnotify.ready("devices up 2/2") is True
    assert listener.wait_for(1) == ["READY=1\nSTATUS=devices up 2/2"]


def test_abstract_socket_is_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    """An '@name' NOTIFY_SOCKET is sent to in the abstract namespace."""
    name = f"edge-agent-test-{os.getpid()}-{time.monotonic_ns()}"
    lst = Listener("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.stopping() is True
        assert lst.wait_for(1) == ["STOPPING=1"]
    finally:
        lst.close()


def test_status_is_one_bounded_line(listener: Listener) -> None:
    """Newlines in a status text cannot inject assignments, and the text is bounded."""
    assert sdnotify.status("line one\nWATCHDOG=1 " + "x" * 1000)
    (message,) = listener.wait_for(1)
    assert message.startswith("STATUS=line one WATCHDOG=1 x")
    assert "\n" not in message
    assert len(message) <= len("STATUS=") + 400


def test_reloading_carries_monotonic_usec(listener: Listener) -> None:
    """reloading() sends RELOADING=1 with the current CLOCK_MONOTONIC in microseconds."""
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading()
    (message,) = listener.wait_for(1)
    first, second = message.split("\n")
    assert first == "RELOADING=1"
    usec = int(second.removeprefix("MONOTONIC_USEC="))
    assert before <= usec <= before + 5_000_000


@pytest.mark.parametrize("value", ["vsock:2:1234", "relative/path"])
def test_unsupported_addresses_return_false(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Addresses other than a path or '@name' are refused without raising."""
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert sdnotify.notify("READY=1") is False


def test_dead_socket_returns_false(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A socket path nobody listens on yields False, not an exception."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sdnotify.notify("WATCHDOG=1") is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("30000000", "1", None),
        ("0", None, None),
        ("abc", None, None),
        (None, None, None),
    ],
)
def test_watchdog_period(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    """The ping period is half of WATCHDOG_USEC, and only for the process WATCHDOG_PID names."""
    for key, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, str(os.getpid()) if value == "self" else value)
    assert sdnotify.watchdog_period() == expected


def test_heartbeat_reports_stalled_stages() -> None:
    """A stage silent for longer than the bound is reported stalled; a fresh beat clears it."""
    now = [100.0]
    hb = sdnotify.Heartbeat(10.0, clock=lambda: now[0])
    assert hb.is_healthy()  # nothing watched yet
    hb.register("link:plc1")
    hb.beat()
    now[0] = 105.0
    hb.beat("link:plc1")
    now[0] = 112.0
    assert hb.stalled() == ["main"]
    assert not hb.is_healthy()
    hb.beat()
    assert hb.is_healthy()
    with pytest.raises(ValueError, match="max_silence_s"):
        sdnotify.Heartbeat(0)


async def test_watchdog_disabled_returns_immediately(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without WATCHDOG_USEC the loop ends at once instead of idling forever."""
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    await asyncio.wait_for(sdnotify.watchdog_loop(lambda: True), timeout=1)


async def test_watchdog_pings_at_half_the_timeout(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With WATCHDOG_USEC=100 ms the loop pings WATCHDOG=1 about every 50 ms while healthy."""
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    task = asyncio.create_task(sdnotify.watchdog_loop(lambda: True))
    await asyncio.sleep(0.32)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pings = [m for _, m in listener.messages if m == "WATCHDOG=1"]
    assert 3 <= len(pings) <= 9, pings  # about 7; loose because CI machines are busy


async def test_watchdog_withholds_pings_while_unhealthy(listener: Listener) -> None:
    """No ping is sent while the health probe says the pipeline makes no progress."""
    healthy = [False]
    task = asyncio.create_task(sdnotify.watchdog_loop(lambda: healthy[0], period_s=0.02))
    await asyncio.sleep(0.15)
    assert listener.messages == []
    healthy[0] = True
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(listener.wait_for(1)) >= 1


async def test_watchdog_probe_exception_counts_as_unhealthy(listener: Listener) -> None:
    """A health probe that raises withholds the ping instead of crashing the loop."""

    def broken() -> bool:
        raise RuntimeError("probe bug")

    task = asyncio.create_task(sdnotify.watchdog_loop(broken, period_s=0.02))
    await asyncio.sleep(0.1)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert listener.messages == []


async def test_blocked_event_loop_stops_the_pings(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the event loop is blocked no ping leaves; pings resume once it runs again."""
    sent: list[float] = []
    real_notify = sdnotify.notify

    def recording(message: str) -> bool:
        sent.append(time.monotonic())  # send time: what systemd's timer actually sees
        return real_notify(message)

    monkeypatch.setattr(sdnotify, "notify", recording)
    task = asyncio.create_task(sdnotify.watchdog_loop(lambda: True, period_s=0.03))
    await asyncio.sleep(0.15)
    blocked_from = time.monotonic()
    time.sleep(0.4)  # deliberately block the loop, as a stuck synchronous call would
    blocked_to = time.monotonic()
    await asyncio.sleep(0.15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [t for t in sent if blocked_from < t < blocked_to] == []
    assert any(t < blocked_from for t in sent)
    assert any(t >= blocked_to for t in sent)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert max(gaps) >= 0.4
    assert listener.wait_for(len(sent)) == ["WATCHDOG=1"] * len(sent)
