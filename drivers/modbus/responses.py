"""Read responses that decode a block in one call and format themselves only for debug logs.

pymodbus 3.16's ``DecodePDU.decode`` passes ``str(pdu)`` to ``Log.debug`` for every
response it decodes, and the argument is evaluated before the call looks at the log
level: the ``repr`` of 125 registers (about 11 us, a quarter of the decode) is built
and thrown away on every read while pymodbus' debug log is off. Its register decode
also unpacks one register per ``struct.unpack`` call (about 30 us for 125 registers).

The classes here are the standard read responses (function codes 1-4) with two
changes, installed through pymodbus' public ``client.register()`` (custom response
classes, looked up by function code):

* ``__str__`` builds the full text only while the ``pymodbus`` logger is enabled for
  DEBUG, and a short ``ReadHoldingRegistersResponse(125 registers)`` otherwise;
* register responses decode every register with one ``struct.unpack_from``.

Behaviour is otherwise the parents': same attributes (``registers``/``bits``), same
``ModbusIOException`` for a byte count beyond the frame, ``isinstance`` of the
standard classes. This module does no I/O.
"""

from __future__ import annotations

import functools
import logging
import struct
from typing import Any

from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.bit_message import ReadCoilsResponse, ReadDiscreteInputsResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

_pymodbus_log = logging.getLogger("pymodbus")


@functools.lru_cache(maxsize=128)
def _words(count: int) -> struct.Struct:
    return struct.Struct(f">{count}H")


def _decode_registers(pdu: Any, data: bytes) -> None:
    """What ``ReadHoldingRegistersResponse.decode`` does, in one unpack."""
    if (data_len := int(data[0])) >= len(data):
        raise ModbusIOException(
            f"byte_count {data_len} > length of packet {len(data)}",
            function_code=pdu.function_code,
        )
    pdu.registers = list(_words(data_len // 2).unpack_from(data, 1))


def _short_str(pdu: Any, what: str) -> str:
    values = pdu.registers if what == "registers" else pdu.bits
    return f"{type(pdu).__name__}(dev_id={pdu.dev_id}, {len(values)} {what})"


class HoldingRegisters(ReadHoldingRegistersResponse):
    """Function code 3 answer (see the module docstring)."""

    def decode(self, data: bytes) -> None:
        """Decode the byte count and every register in one call."""
        _decode_registers(self, data)

    def __str__(self) -> str:
        """Full text while pymodbus logs at DEBUG, a short one otherwise."""
        if _pymodbus_log.isEnabledFor(logging.DEBUG):
            return super().__str__()
        return _short_str(self, "registers")


class InputRegisters(ReadInputRegistersResponse):
    """Function code 4 answer (see the module docstring)."""

    def decode(self, data: bytes) -> None:
        """Decode the byte count and every register in one call."""
        _decode_registers(self, data)

    def __str__(self) -> str:
        """Full text while pymodbus logs at DEBUG, a short one otherwise."""
        if _pymodbus_log.isEnabledFor(logging.DEBUG):
            return super().__str__()
        return _short_str(self, "registers")


class Coils(ReadCoilsResponse):
    """Function code 1 answer: the parent's decode, the cheap ``__str__``."""

    def __str__(self) -> str:
        """Full text while pymodbus logs at DEBUG, a short one otherwise."""
        if _pymodbus_log.isEnabledFor(logging.DEBUG):
            return super().__str__()
        return _short_str(self, "bits")


class DiscreteInputs(ReadDiscreteInputsResponse):
    """Function code 2 answer: the parent's decode, the cheap ``__str__``."""

    def __str__(self) -> str:
        """Full text while pymodbus logs at DEBUG, a short one otherwise."""
        if _pymodbus_log.isEnabledFor(logging.DEBUG):
            return super().__str__()
        return _short_str(self, "bits")


#: Installed on every client of a link with ``client.register(cls)``.
READ_RESPONSES: tuple[type[Any], ...] = (HoldingRegisters, InputRegisters, Coils, DiscreteInputs)
