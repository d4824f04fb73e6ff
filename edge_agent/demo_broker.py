"""A private MQTT broker for ``edge-agent demo``: Mosquitto if installed, else amqtt in-process.

Demo only: the agent itself never embeds a broker. Mosquitto is started as a
child process on a free loopback port with a throw-away config and stopped by
PID. Without Mosquitto, the pure-Python ``amqtt`` broker (the ``demo`` extra)
runs inside the demo's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger("edge_agent.demo")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mosquitto_binary() -> str | None:
    for candidate in ("/usr/sbin/mosquitto", shutil.which("mosquitto")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class DemoBroker:
    """Async context manager: a broker on 127.0.0.1:``port``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.kind = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._amqtt: Any = None

    async def __aenter__(self) -> DemoBroker:
        binary = _mosquitto_binary()
        if binary is not None:
            self._tmp = tempfile.TemporaryDirectory(prefix="edge-demo-broker-")
            conf = Path(self._tmp.name) / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            )
            # A session of its own: Ctrl-C in the terminal must not kill the broker before the
            # agent has flushed; it is stopped by PID in __aexit__.
            self._proc = subprocess.Popen(  # noqa: S603, ASYNC220 - fixed argv; a start, not a wait
                [binary, "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.kind = "mosquitto"
        else:
            try:
                from amqtt.broker import Broker
            except ImportError as exc:
                raise RuntimeError(
                    "No MQTT broker for the demo: install Mosquitto "
                    "(sudo apt-get install mosquitto) "
                    "or the demo extra (pip install 'edge-agent[demo]')"
                ) from exc
            config = {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
            self._amqtt = Broker(config)
            await self._amqtt.start()
            self.kind = "amqtt"
        await self._wait_ready()
        return self

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            if self._proc is not None and self._proc.poll() is not None:
                break
            await asyncio.sleep(0.05)
        raise RuntimeError(f"demo broker ({self.kind}) did not start on 127.0.0.1:{self.port}")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self._proc.wait, 5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._amqtt is not None:
            try:
                await self._amqtt.shutdown()
            except Exception as exc:  # the demo broker goes away either way
                log.debug("Demo broker shutdown failed: %s", exc)
        if self._tmp is not None:
            self._tmp.cleanup()
