"""Process signals: SIGTERM/SIGINT stop the agent, SIGHUP reloads its configuration.

``EDGE_AGENT_DEBUG_FREEZE_S`` adds a diagnostic for checking a device's watchdog
set-up: SIGUSR2 then blocks the event loop for that many seconds, so systemd must
see the watchdog pings stop and restart the agent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time


def install(stop: asyncio.Event, reload: asyncio.Event) -> None:
    """Route the signals to the runtime's events (on the running loop)."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    freeze_s = os.environ.get("EDGE_AGENT_DEBUG_FREEZE_S")
    if freeze_s:
        loop.add_signal_handler(signal.SIGUSR2, time.sleep, float(freeze_s))
