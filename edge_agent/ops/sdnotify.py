"""systemd readiness, status and watchdog notifications (``sd_notify``), without libsystemd.

Under ``Type=notify`` systemd passes the path of a datagram socket in
``NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for the abstract namespace);
this module sends ``READY=1``, ``STATUS=...``, ``RELOADING=1``, ``STOPPING=1``
and ``WATCHDOG=1`` to it. Outside systemd (tests, a technician running
``edge-agent run`` by hand) every call is a cheap no-op returning ``False``.

What it does not do: it never unsets ``NOTIFY_SOCKET`` (the agent notifies
for its whole life), handles no ``vsock:`` addresses, and sends no file
descriptors (no ``FDSTORE``).

Guarantees:

* :func:`notify` never raises: a missing or dead socket returns ``False``
  (systemd being restarted must not crash the agent).
* :func:`watchdog_loop` pings from the event loop itself, at half of
  ``WatchdogSec=``, and only while ``is_healthy()`` says the pipeline makes
  progress. A blocked event loop therefore stops the pings by construction,
  and systemd kills and restarts the agent (with ``PYTHONFAULTHANDLER=1`` the
  journal then shows every thread's stack).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

log = logging.getLogger("edge_agent.ops.sdnotify")

__all__ = [
    "Heartbeat",
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog_loop",
    "watchdog_period",
]

# systemd truncates STATUS= at a few KB; keep the datagram well below any limit.
_MAX_STATUS_CHARS = 400


def _socket_address(raw: str) -> str | None:
    """Translate ``NOTIFY_SOCKET`` into an ``AF_UNIX`` address, or ``None`` if unsupported."""
    if raw.startswith("@"):
        return "\0" + raw[1:]  # abstract namespace
    if raw.startswith("/"):
        return raw
    return None  # vsock: and anything else is not handled


def notify(message: str) -> bool:
    """Send one notification datagram to systemd.

    Args:
        message: Newline-separated ``KEY=VALUE`` assignments, e.g. ``"READY=1"``.

    Returns:
        ``True`` when the datagram was sent, ``False`` when not running under a
        notify-type service or when the socket could not be reached.
    """
    raw = os.environ.get("NOTIFY_SOCKET")
    if not raw:
        return False
    address = _socket_address(raw)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8", errors="replace"))
    except OSError as exc:
        # Survived, so logged (once per call; the caller decides how often to notify).
        log.debug("sd_notify failed socket=%r error=%s", raw, exc)
        return False
    return True


def ready(status_text: str | None = None) -> bool:
    """Tell systemd start-up is complete (config loaded, buffer open)."""
    message = "READY=1"
    if status_text:
        message += "\nSTATUS=" + _clean_status(status_text)
    return notify(message)


def status(text: str) -> bool:
    """Set the one-line status shown by ``systemctl status edge-agent``."""
    return notify("STATUS=" + _clean_status(text))


def stopping() -> bool:
    """Tell systemd the agent is shutting down (on SIGTERM)."""
    return notify("STOPPING=1")


def reloading() -> bool:
    """Tell systemd a reload (SIGHUP) started; call :func:`ready` when it is done.

    ``MONOTONIC_USEC`` is included because systemd >= 253 requires it with
    ``RELOADING=1``; older versions ignore it.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def _clean_status(text: str) -> str:
    """One line, bounded length: a newline would start a new assignment."""
    line = " ".join(text.split())
    return line[:_MAX_STATUS_CHARS]


def watchdog_period() -> float | None:
    """Seconds between watchdog pings (half of ``WatchdogSec=``), or ``None`` if disabled.

    ``WATCHDOG_PID`` is honoured: when it names another process (a child that
    inherited the environment) the watchdog is not ours to feed.
    """
    usec_raw = os.environ.get("WATCHDOG_USEC")
    pid_raw = os.environ.get("WATCHDOG_PID")
    if not usec_raw:
        return None
    try:
        usec = int(usec_raw)
        if pid_raw and int(pid_raw) != os.getpid():
            return None
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2e6


class Heartbeat:
    """Progress marker the pipeline stages touch; the watchdog asks it whether they move.

    Each named stage (a link task, the buffer writer, the status writer) calls
    :meth:`beat` whenever it completes a unit of work; ``beat()`` without a
    name marks the stage ``"main"``. :meth:`is_healthy` is true when every
    stage that ever beat (or was registered) did so within ``max_silence_s``.
    Time is ``time.monotonic`` unless a clock is injected (tests).

    Args:
        max_silence_s: Longest silence of a stage still considered progress.
        clock: Monotonic time source.
    """

    DEFAULT_STAGE = "main"

    def __init__(
        self,
        max_silence_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_silence_s <= 0:
            raise ValueError("max_silence_s must be > 0")
        self.max_silence_s = max_silence_s
        self._clock = clock
        self._last: dict[str, float] = {}

    def register(self, stage: str) -> None:
        """Start watching a stage; it counts as having just beaten."""
        self._last[stage] = self._clock()

    def beat(self, stage: str = DEFAULT_STAGE) -> None:
        """Record progress of one stage (registers it on first use)."""
        self._last[stage] = self._clock()

    def stalled(self) -> list[str]:
        """Names of stages silent for longer than ``max_silence_s``, sorted."""
        now = self._clock()
        return sorted(s for s, t in self._last.items() if now - t > self.max_silence_s)

    def is_healthy(self) -> bool:
        """True when no watched stage is stalled."""
        return not self.stalled()


async def watchdog_loop(
    is_healthy: Callable[[], bool],
    *,
    period_s: float | None = None,
) -> None:
    """Ping ``WATCHDOG=1`` at half the watchdog timeout while ``is_healthy()`` holds.

    Runs until cancelled. Returns immediately when the watchdog is not enabled
    for this process. The ping is sent from this coroutine, so a blocked event
    loop sends nothing and systemd notices.

    Args:
        is_healthy: Called before each ping; return ``False`` to withhold it
            (e.g. :meth:`Heartbeat.is_healthy`).
        period_s: Override of the ping period (tests); default from the environment.
    """
    period = watchdog_period() if period_s is None else period_s
    if period is None or period <= 0:
        return
    withheld = False
    while True:
        try:
            healthy = bool(is_healthy())
        except Exception:
            # A broken health probe must not look healthy.
            log.exception("Watchdog health probe failed")
            healthy = False
        if healthy:
            notify("WATCHDOG=1")
            if withheld:
                log.warning("Watchdog pings resumed")
                withheld = False
        elif not withheld:
            log.error("Watchdog pings withheld: pipeline made no progress")
            withheld = True
        await asyncio.sleep(period)
