"""A tiny, fully controllable Modbus server for driver tests (TCP on 127.0.0.1:0, RTU on a pty).

It answers function codes 1-4 from per-unit memory, counts every request,
and injects the quirks the driver must survive: illegal addresses, silent
(dead) unit ids, slow replies, busy replies and gateway exceptions, and
malformed answers (``Unit.garble``: wrong function code or unit id, byte
counts that disagree with the request or the frame, trailing bytes inside or
after the frame, random bytes, a bad CRC on RTU). It is
deliberately independent of the driver's codec so tests compare against an
implementation that does not share its bugs. It does not implement writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import termios
import time
import tty
from dataclasses import dataclass, field


@dataclass
class Unit:
    """Memory and quirks of one unit id."""

    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    coils: dict[int, bool] = field(default_factory=dict)
    discrete: dict[int, bool] = field(default_factory=dict)
    illegal: set[int] = field(default_factory=set)
    silent: bool = False
    delay_s: float = 0.0
    exception: int | None = None
    garble: str | None = None  # one of GARBLES: answer with a malformed response


# Malformed answers: PDU-level ones are built by Model.handle, framing-level ones by
# the TCP/RTU front ends ("trailing_after", "wrong_unit", "random", "bad_crc").
GARBLES = (
    "wrong_function",
    "short_register",
    "extra_register",
    "byte_count_lies",
    "trailing_in_frame",
    "trailing_after",
    "wrong_unit",
    "random",
    "bad_crc",
)


@dataclass
class Request:
    """One request as the server saw it."""

    unit: int
    function: int
    start: int
    count: int
    t: float = field(default_factory=time.monotonic)


class Model:
    """Units, request log and PDU handling shared by both framings."""

    def __init__(self) -> None:
        self.units: dict[int, Unit] = {}
        self.log: list[Request] = []

    def unit(self, unit_id: int) -> Unit:
        """The unit with this id, created on first use."""
        return self.units.setdefault(unit_id, Unit())

    async def handle(self, unit_id: int, pdu: bytes) -> bytes | None:
        """Answer one request PDU; None means stay silent."""
        fc = pdu[0]
        start, count = struct.unpack(">HH", pdu[1:5])
        self.log.append(Request(unit_id, fc, start, count))
        unit = self.units.get(unit_id)
        if unit is None or unit.silent:
            return None
        if unit.delay_s:
            await asyncio.sleep(unit.delay_s)
        if unit.exception is not None:
            return bytes([fc | 0x80, unit.exception])
        if fc not in (1, 2, 3, 4):
            return bytes([fc | 0x80, 1])
        if any(a in unit.illegal for a in range(start, start + count)):
            return bytes([fc | 0x80, 2])
        if fc in (1, 2):
            mem = unit.coils if fc == 1 else unit.discrete
            bits = [mem.get(a, False) for a in range(start, start + count)]
            out = bytearray((count + 7) // 8)
            for i, b in enumerate(bits):
                if b:
                    out[i // 8] |= 1 << (i % 8)
            return bytes([fc, len(out)]) + bytes(out)
        regs = unit.holding if fc == 3 else unit.input
        words = [regs.get(a, 0) for a in range(start, start + count)]
        return _garbled(unit.garble, fc, words) or bytes([fc, 2 * count]) + struct.pack(
            f">{count}H", *words
        )

    def count(self, unit_id: int | None = None) -> int:
        """Requests seen (for one unit id, or all)."""
        return sum(1 for r in self.log if unit_id is None or r.unit == unit_id)

    def garble_of(self, unit_id: int) -> str | None:
        """The framing-level garble configured for a unit (None: answer normally)."""
        unit = self.units.get(unit_id)
        return unit.garble if unit is not None else None


def _garbled(garble: str | None, fc: int, words: list[int]) -> bytes | None:
    """A malformed register-read PDU for PDU-level garbles (None: answer normally)."""
    n = len(words)
    body = struct.pack(f">{n}H", *words)
    if garble == "wrong_function":
        return bytes([4 if fc == 3 else 3, 2 * n]) + body  # FC 4 answer to FC 3
    if garble == "short_register":
        return bytes([fc, 2 * (n - 1)]) + body[:-2]
    if garble == "extra_register":
        return bytes([fc, 2 * (n + 1)]) + body + b"\x00\x07"
    if garble == "byte_count_lies":
        return bytes([fc, 2 * n]) + body[:-2]  # says n registers, carries n - 1
    if garble == "trailing_in_frame":
        return bytes([fc, 2 * n]) + body + b"\xde\xad"
    return None


class TcpServer:
    """Modbus TCP framing over asyncio streams; restartable on the same port."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> None:
        """Listen on 127.0.0.1 (port 0 the first time, the same port on restart)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        self._writers.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.connections += 1
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _pid, length, unit_id = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                reply = await self.model.handle(unit_id, pdu)
                if reply is not None and not writer.is_closing():
                    garble = self.model.garble_of(unit_id)
                    answer_unit = unit_id + 1 if garble == "wrong_unit" else unit_id
                    frame = struct.pack(">HHHB", tid, 0, len(reply) + 1, answer_unit) + reply
                    if garble == "trailing_after":
                        frame += b"\x00\x00\x00"
                    elif garble == "random":
                        frame = bytes(range(7, 7 + len(frame)))
                    writer.write(frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


def crc16(data: bytes) -> bytes:
    """Modbus RTU CRC-16 (poly 0xA001), little-endian as sent on the wire."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


class RtuServer:
    """Modbus RTU framing on one end of a pty pair (requests for FC 1-4 are 8 bytes)."""

    def __init__(self, model: Model, path: str) -> None:
        self.model = model
        self.path = path
        self._fd = -1
        self._buf = b""
        self._task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.reply_times: list[float] = []

    async def start(self) -> None:
        """Open the pty end in raw mode and serve frames."""
        self._fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self._fd, termios.TCSANOW)
        asyncio.get_running_loop().add_reader(self._fd, self._on_readable)
        self._task = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        """Stop serving and close the pty end."""
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except OSError:
            return
        self._buf += data
        while len(self._buf) >= 8:
            frame, self._buf = self._buf[:8], self._buf[8:]
            if crc16(frame[:6]) == frame[6:]:
                self._queue.put_nowait(frame)
            else:
                self._buf = b""  # resynchronise on garbage

    async def _serve(self) -> None:
        while True:
            frame = await self._queue.get()
            reply = await self.model.handle(frame[0], frame[1:6])
            if reply is not None and self._fd >= 0:
                body = bytes([frame[0]]) + reply
                out = body + crc16(body)
                garble = self.model.garble_of(frame[0])
                if garble == "bad_crc":
                    out = body + bytes(b ^ 0xFF for b in crc16(body))
                elif garble == "trailing_after":
                    out += b"\x00\x00\x00"
                os.write(self._fd, out)
                self.reply_times.append(time.monotonic())
