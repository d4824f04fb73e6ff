"""The raw-frame check of Modbus read answers against their request (pure, table-driven)."""

from __future__ import annotations

import struct

import pytest

from drivers.modbus.frames import Expected, Verdict, check_rtu, check_tcp, crc16

HOLDING_3 = Expected(unit=1, function=3, count=3, tid=7)
COILS_10 = Expected(unit=1, function=1, count=10, tid=7)


def mbap(pdu: bytes, *, tid: int = 7, unit: int = 1, protocol: int = 0) -> bytes:
    return struct.pack(">HHHB", tid, protocol, len(pdu) + 1, unit) + pdu


def regs(fc: int, values: list[int], byte_count: int | None = None) -> bytes:
    count = 2 * len(values) if byte_count is None else byte_count
    return bytes([fc, count]) + struct.pack(f">{len(values)}H", *values)


GOOD = mbap(regs(3, [1, 2, 3]))


@pytest.mark.parametrize(
    ("buf", "verdict", "kind"),
    [
        (GOOD, Verdict.COMPLETE, ""),
        (mbap(bytes([0x83, 2])), Verdict.COMPLETE, ""),  # exception response
        (mbap(bytes([1, 2, 0xFF, 0x03])), Verdict.INVALID, "function_code"),
        (mbap(regs(4, [1, 2, 3])), Verdict.INVALID, "function_code"),
        (mbap(regs(3, [1, 2, 3]), unit=2), Verdict.INVALID, "unit_id"),
        (mbap(regs(3, [1, 2])), Verdict.INVALID, "byte_count"),
        (mbap(regs(3, [1, 2, 3, 4])), Verdict.INVALID, "byte_count"),
        (mbap(regs(3, [1, 2], byte_count=6)), Verdict.INVALID, "length"),
        (mbap(regs(3, [1, 2, 3]) + b"\x00"), Verdict.INVALID, "trailing_bytes"),
        (GOOD + b"\x01\x02", Verdict.INVALID, "trailing_bytes"),
        (mbap(regs(3, [1, 2, 3]), protocol=1), Verdict.INVALID, "framing"),
        (struct.pack(">HHHB", 7, 0, 1, 1), Verdict.INVALID, "framing"),
        (mbap(bytes([0x83, 2, 0])), Verdict.INVALID, "trailing_bytes"),
        (GOOD[:5], Verdict.INCOMPLETE, ""),
        (GOOD[:-1], Verdict.INCOMPLETE, ""),
        (mbap(regs(3, [9, 9, 9]), tid=6) + GOOD, Verdict.COMPLETE, ""),  # late answer first
        (mbap(regs(3, [1, 2, 3]), tid=0), Verdict.COMPLETE, ""),  # old servers answer TID 0
    ],
)
def test_tcp_answers(buf: bytes, verdict: Verdict, kind: str) -> None:
    """Each malformed TCP answer is INVALID with its kind; partial frames wait for more."""
    check = check_tcp(HOLDING_3, buf)
    assert (check.verdict, check.kind) == (verdict, kind), check.reason


def test_bit_reads_count_bytes_not_bits() -> None:
    """Ten coils come in two data bytes; three bytes is a byte-count error."""
    assert check_tcp(COILS_10, mbap(bytes([1, 2, 0xFF, 0x03]))).verdict is Verdict.COMPLETE
    bad = check_tcp(COILS_10, mbap(bytes([1, 3, 0xFF, 0x03, 0])))
    assert (bad.verdict, bad.reason) == (Verdict.INVALID, "byte count 3 for 10 bits (expected 2)")


def rtu(body: bytes) -> bytes:
    return body + crc16(body)


RTU_GOOD = rtu(bytes([1]) + regs(3, [1, 2, 3]))


@pytest.mark.parametrize(
    ("buf", "verdict", "kind"),
    [
        (RTU_GOOD, Verdict.COMPLETE, ""),
        (rtu(bytes([1, 0x83, 2])), Verdict.COMPLETE, ""),
        (RTU_GOOD[:4], Verdict.INCOMPLETE, ""),
        (RTU_GOOD[:-1], Verdict.INCOMPLETE, ""),
        (RTU_GOOD[:-2] + b"\x00\x00", Verdict.INVALID, "crc"),
        (RTU_GOOD + b"\x00", Verdict.INVALID, "trailing_bytes"),
        (rtu(bytes([2]) + regs(3, [1, 2, 3])), Verdict.INVALID, "unit_id"),
        (rtu(bytes([1]) + regs(4, [1, 2, 3])), Verdict.INVALID, "function_code"),
        (rtu(bytes([1]) + regs(3, [1, 2])), Verdict.INVALID, "byte_count"),
    ],
)
def test_rtu_answers(buf: bytes, verdict: Verdict, kind: str) -> None:
    """RTU: unit, function code, byte count and CRC are checked; early bytes wait for more."""
    expected = Expected(unit=1, function=3, count=3)
    check = check_rtu(expected, buf)
    assert (check.verdict, check.kind) == (verdict, kind), check.reason


def test_reasons_name_what_was_wrong() -> None:
    """The reason says what the device sent against what was asked."""
    assert check_tcp(HOLDING_3, mbap(regs(4, [1, 2, 3]))).reason == (
        "function code 4 in the answer to a function code 3 request"
    )
    assert check_tcp(HOLDING_3, mbap(regs(3, [1, 2]))).reason == (
        "byte count 4 for 3 registers (expected 6)"
    )
