"""Modbus RTU front end on a serial device or pseudo-terminal.

Frames are delimited the RTU way, by silence: bytes accumulate until the
line has been quiet for 3.5 character times (fixed at 1.75 ms above 19200
baud, as the spec allows; never less than 2 ms here because a pty delivers
bytes in bursts and asyncio timers are coarse). A frame with a bad CRC or
for a unit id we do not simulate is ignored, as on a multi-drop bus; unit 0
(broadcast) executes writes without replying. Comms quirks: during an
outage (any mode) the unit is silent; ``response_delay_ms`` delays the
reply. Works on a ``socat -d -d pty,raw,echo=0 pty,raw,echo=0`` pair so RTU is
testable without hardware. This module does not configure baud rate on a
pty (there is none); on a real UART it sets raw 8N1 at ``baudrate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import termios
import tty
from collections.abc import Mapping
from types import TracebackType

from simulators.device import MachineDevice
from simulators.modbus_pdu import crc16, handle_pdu

log = logging.getLogger("simulators.modbus_rtu")

_BAUD = {
    9600: termios.B9600,
    19200: termios.B19200,
    38400: termios.B38400,
    57600: termios.B57600,
    115200: termios.B115200,
}


def frame_gap_s(baudrate: int) -> float:
    """Inter-frame silence (t3.5) for a baud rate, at least 2 ms."""
    if baudrate > 19200:
        return 0.002
    return max(0.002, 3.5 * 11 / baudrate)


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """Unit id + PDU + CRC (low byte first)."""
    body = bytes((unit,)) + pdu
    return body + crc16(body).to_bytes(2, "little")


class ModbusRtuServer:
    """Async context manager serving machines over Modbus RTU.

    Args:
        devices: Unit id -> device.
        path: Serial device or pty path (e.g. one end of a socat pair).
        baudrate: Line speed; sets the inter-frame gap (and the UART, if real).
    """

    def __init__(
        self, devices: Mapping[int, MachineDevice], path: str, *, baudrate: int = 19200
    ) -> None:
        self.devices = devices
        self.path = path
        self.baudrate = baudrate
        self._fd: int | None = None
        self._buf = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._gap = frame_gap_s(baudrate)
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self._worker: asyncio.Task[None] | None = None
        self.frames = 0
        self.crc_errors = 0

    async def start(self) -> None:
        """Open the port and start serving."""
        fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            tty.setraw(fd)
            attrs = termios.tcgetattr(fd)
            speed = _BAUD.get(self.baudrate)
            if speed is not None:
                attrs[4] = attrs[5] = speed
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except termios.error:
            pass  # not a tty (a plain pipe in a test): serve anyway
        self._fd = fd
        loop = asyncio.get_running_loop()
        loop.add_reader(fd, self._on_readable)
        self._worker = loop.create_task(self._work())

    async def stop(self) -> None:
        """Stop serving and close the port."""
        if self._timer is not None:
            self._timer.cancel()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None

    async def __aenter__(self) -> ModbusRtuServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _on_readable(self) -> None:
        assert self._fd is not None  # noqa: S101  # reader is removed before close
        try:
            data = os.read(self._fd, 512)
        except BlockingIOError:
            return
        except OSError:
            # The other end of a pty went away (EIO): wait for a new peer.
            data = b""
        if not data:
            return
        self._buf += data
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._gap, self._end_of_frame)

    def _end_of_frame(self) -> None:
        self._timer = None
        frame = bytes(self._buf)
        self._buf.clear()
        if len(frame) < 4:
            return
        if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
            self.crc_errors += 1
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(frame[:-2])

    async def _work(self) -> None:
        while True:
            body = await self._queue.get()
            unit, pdu = body[0], body[1:]
            self.frames += 1
            targets = list(self.devices.values()) if unit == 0 else [self.devices.get(unit)]
            for dev in targets:
                if dev is None or dev.outage_mode is not None:
                    continue
                if dev.response_delay_s > 0 and unit != 0:
                    await asyncio.sleep(dev.response_delay_s)
                reply = handle_pdu(dev, pdu)
                if unit != 0:
                    self._write(rtu_frame(unit, reply))

    def _write(self, frame: bytes) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, frame)
        except OSError as exc:
            log.warning("Modbus RTU write failed path=%s error=%s", self.path, exc)
