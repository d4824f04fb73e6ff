"""Modbus TCP front end: one listening socket, one unit id per machine.

Why our own server instead of pymodbus's: the simulator's job is to
misbehave on purpose, per unit id and per request. pymodbus 3.16's server
reworked its datastore (SimDevice/SimData, one-based block addressing,
shared-space pitfalls) and offers no hook to *not* answer one unit while
answering another, to close a connection mid-stream, or to delay a single
reply. The Modbus TCP frame (7-byte MBAP header + PDU) and the eight
function codes we serve are ~150 lines (:mod:`simulators.modbus_pdu`), so a
thin asyncio server gives full control over the quirks and costs less CPU
per request than pymodbus's generic stack.

Behaviour per request, by the addressed machine's state: outage mode
``silent`` -> no reply (the client times out; the connection stays open);
``close`` -> the connection is closed (new connections are accepted and
closed on their first request); ``response_delay_ms`` -> the reply is held
back that long (requests on one connection are answered in order, like a
real device's single-threaded stack); an unknown unit id -> exception 0x0B
(gateway target device failed to respond). Guarantees: binds the requested
host (port 0 = any free port, see :attr:`ModbusTcpServer.port`); on exit
every client connection is closed.

Connection log: every client connection is recorded in
:attr:`ModbusTcpServer.connections` (peer, monotonic open and close times,
requests served) and, with ``connection_log``, appended to a JSON Lines file as
it opens and closes, so a test can check that a client never held two
connections at once (a reload replacing a link must close before it reopens).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import struct
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from simulators.device import MachineDevice
from simulators.modbus_pdu import GATEWAY_NO_RESPONSE, exception_pdu, handle_pdu
from simulators.scenario import OutageMode

log = logging.getLogger("simulators.modbus_tcp")

_MAX_ADU = 260


@dataclass(slots=True)
class Connection:
    """One client connection as the server saw it (times from ``time.monotonic()``)."""

    id: int
    peer: str
    opened: float
    closed: float | None = None
    requests: int = 0


class ModbusTcpServer:
    """Async context manager serving machines over Modbus TCP.

    Args:
        devices: Unit id -> device.
        host: Address to bind (tests: 127.0.0.1).
        port: TCP port; 0 picks a free one.
        connection_log: JSON Lines file that receives one line per connection opened
            and closed (``event``, ``id``, ``peer``, ``opened``, ``closed``, ``requests``).
    """

    def __init__(
        self,
        devices: Mapping[int, MachineDevice],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        connection_log: str | Path | None = None,
    ) -> None:
        self.devices = devices
        self.host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.requests = 0
        self.connections: list[Connection] = []
        self._ids = itertools.count(1)
        self._log_path = Path(connection_log) if connection_log is not None else None

    @property
    def port(self) -> int:
        """The bound TCP port (valid inside the context)."""
        return self._port

    async def start(self) -> None:
        """Bind and start serving."""
        self._server = await asyncio.start_server(self._serve, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every client connection."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                await w.wait_closed()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ModbusTcpServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _log(self, event: str, conn: Connection) -> None:
        if self._log_path is None:
            return
        with self._log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"event": event, **asdict(conn)}) + "\n")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        conn = Connection(
            id=next(self._ids),
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
            opened=time.monotonic(),
        )
        self.connections.append(conn)
        self._log("open", conn)
        try:
            while True:
                header = await reader.readexactly(7)
                tid, pid, length, unit = struct.unpack(">HHHB", header)
                if length < 2 or length > _MAX_ADU - 6:
                    return  # not Modbus: drop the connection like a device would
                pdu = await reader.readexactly(length - 1)
                if pid != 0:
                    continue
                self.requests += 1
                conn.requests += 1
                dev = self.devices.get(unit)
                if dev is None:
                    reply = exception_pdu(pdu[0], GATEWAY_NO_RESPONSE)
                else:
                    mode = dev.outage_mode
                    if mode is OutageMode.CLOSE:
                        return
                    if mode is OutageMode.SILENT:
                        continue
                    if dev.response_delay_s > 0:
                        await asyncio.sleep(dev.response_delay_s)
                        if dev.outage_mode is not None:
                            continue
                    reply = handle_pdu(dev, pdu)
                writer.write(struct.pack(">HHHB", tid, 0, len(reply) + 1, unit) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not kill the listener; log it once per connection
            log.exception("Modbus TCP connection failed")
        finally:
            self._writers.discard(writer)
            writer.close()
            conn.closed = time.monotonic()
            self._log("close", conn)
