"""Checks a Modbus read response, as raw bytes, against the request it answers.

pymodbus accepts more than the protocol allows: an FC 4 answer to an FC 3 read
decodes as good registers, bytes after the byte count (inside the MBAP length or
after the frame) are ignored, and a byte count that disagrees with the frame makes
it raise inside asyncio's ``data_received`` (an ERROR traceback in the journal,
the connection dropped). So the link looks at every received buffer first (through
pymodbus' ``trace_packet`` hook) with :func:`check_tcp` or :func:`check_rtu`:

* ``COMPLETE``: exactly one well-formed answer to the outstanding request (for
  TCP possibly preceded by complete frames carrying another transaction id: late
  answers to earlier requests, which pymodbus skips);
* ``INCOMPLETE``: a valid beginning, wait for more bytes;
* ``INVALID``: anything else, with the reason: unit id, function code, byte count
  against the number of registers or bits requested, trailing bytes, protocol id,
  length field, CRC.

Pure functions over bytes; no I/O, no pymodbus types. Only the read function
codes 1-4 are checked (the agent never writes).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

MAX_PDU = 253


class Verdict(enum.Enum):
    """What a received buffer is, relative to the outstanding request."""

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Expected:
    """The outstanding read request: unit id, function code (1-4), registers or bits."""

    unit: int
    function: int
    count: int
    tid: int = 0  # TCP transaction id of the request (0: not known / RTU)

    @property
    def data_bytes(self) -> int:
        """The byte count a correct answer carries."""
        return (self.count + 7) // 8 if self.function in (1, 2) else 2 * self.count

    @property
    def what(self) -> str:
        """``3 registers`` / ``10 bits`` for messages."""
        return f"{self.count} {'bits' if self.function in (1, 2) else 'registers'}"


@dataclass(frozen=True, slots=True)
class Check:
    """A verdict and, when ``INVALID``, the reason and a short kind for counting."""

    verdict: Verdict
    reason: str = ""
    kind: str = ""


_COMPLETE = Check(Verdict.COMPLETE)
_INCOMPLETE = Check(Verdict.INCOMPLETE)


def _invalid(kind: str, reason: str) -> Check:
    return Check(Verdict.INVALID, reason, kind)


def _head(expected: Expected, unit: int, function: int, byte_count: int | None) -> Check | int:
    """Unit id, function code and byte count: a problem, or the PDU size they imply."""
    if unit != expected.unit:
        return _invalid(
            "unit_id", f"unit id {unit} in the answer to a request for unit {expected.unit}"
        )
    if function == expected.function | 0x80:
        return 2  # exception response: function code and exception code
    if function != expected.function:
        return _invalid(
            "function_code",
            f"function code {function} in the answer to a function code "
            f"{expected.function} request",
        )
    if byte_count is None:
        return -1  # not arrived yet
    if byte_count != expected.data_bytes:
        return _invalid(
            "byte_count",
            f"byte count {byte_count} for {expected.what} (expected {expected.data_bytes})",
        )
    return 2 + expected.data_bytes


def check_tcp(expected: Expected, buf: bytes) -> Check:
    """Check a Modbus TCP receive buffer (MBAP frames) against the outstanding request."""
    pos = 0
    while True:
        left = len(buf) - pos
        if left < 7:
            return _INCOMPLETE
        tid, protocol, length, unit = struct.unpack_from(">HHHB", buf, pos)
        if protocol != 0:
            return _invalid("framing", f"protocol id {protocol} in the MBAP header (expected 0)")
        if length < 2 or length > MAX_PDU + 1:
            return _invalid("framing", f"MBAP length {length} out of range")
        end = pos + 6 + length
        if len(buf) < end:
            return _INCOMPLETE
        if expected.tid and tid and tid != expected.tid:
            pos = end  # a late answer to an earlier request: pymodbus skips it too
            continue
        pdu = buf[pos + 7 : end]
        head = _head(expected, unit, pdu[0], pdu[1] if len(pdu) > 1 else None)
        if isinstance(head, Check):
            return head
        if head < 0:
            return _invalid("length", "frame ends after the function code")
        if len(pdu) < head:
            return _invalid(
                "length", f"byte count {pdu[1]} but {len(pdu) - 2} data bytes in the frame"
            )
        if len(pdu) > head:
            return _invalid("trailing_bytes", f"{len(pdu) - head} bytes after the response data")
        if end < len(buf):
            return _invalid("trailing_bytes", f"{len(buf) - end} bytes after the response frame")
        return _COMPLETE


def crc16(data: bytes) -> bytes:
    """Modbus RTU CRC-16 (polynomial 0xA001), as sent on the wire (low byte first)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


def check_rtu(expected: Expected, buf: bytes) -> Check:
    """Check a Modbus RTU receive buffer (unit, PDU, CRC) against the outstanding request."""
    if len(buf) < 2:
        return _INCOMPLETE
    head = _head(expected, buf[0], buf[1], buf[2] if len(buf) > 2 else None)
    if isinstance(head, Check):
        return head
    if head < 0:
        return _INCOMPLETE
    size = 1 + head + 2  # unit id, PDU, CRC
    if len(buf) < size:
        return _INCOMPLETE
    if crc16(buf[: size - 2]) != buf[size - 2 : size]:
        return _invalid("crc", "CRC does not match")
    if len(buf) > size:
        return _invalid("trailing_bytes", f"{len(buf) - size} bytes after the response frame")
    return _COMPLETE
