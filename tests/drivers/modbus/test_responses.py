"""Read responses decoded in one call, formatted only for pymodbus' debug log (issue 20)."""

from __future__ import annotations

import logging
import random
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.decoders import DecodePDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

from drivers.modbus.link import build_links
from drivers.modbus.responses import (
    READ_RESPONSES,
    Coils,
    DiscreteInputs,
    HoldingRegisters,
    InputRegisters,
)
from edge_agent.model import Quality
from tests.drivers.modbus.conftest import make_device
from tests.drivers.modbus.fakeserver import Model, TcpServer
from tests.drivers.modbus.helpers import running


@pytest.fixture
def pymodbus_debug() -> Iterator[logging.Logger]:
    logger = logging.getLogger("pymodbus")
    level = logger.level
    yield logger
    logger.setLevel(level)


def _decoders() -> tuple[DecodePDU, DecodePDU]:
    fast = DecodePDU(False)
    for cls in READ_RESPONSES:
        fast.register(cls)
    return DecodePDU(False), fast


@pytest.mark.parametrize("function", [3, 4])
@pytest.mark.parametrize("count", [1, 2, 7, 125])
def test_registers_decode_like_pymodbus(function: int, count: int) -> None:
    """Every register of a block decodes to what pymodbus' own response gives."""
    rng = random.Random(count * 10 + function)
    words = [rng.randrange(0x10000) for _ in range(count - 1)] + [0xFFFF]
    frame = struct.pack(f">BB{count}H", function, 2 * count, *words)
    standard, fast = _decoders()
    want, got = standard.decode(frame), fast.decode(frame)
    assert want is not None
    assert got is not None
    assert type(got) is (HoldingRegisters if function == 3 else InputRegisters)
    parent = ReadInputRegistersResponse if function == 4 else ReadHoldingRegistersResponse
    assert isinstance(got, parent)
    assert got.registers == want.registers == words
    assert got.function_code == function


def test_byte_count_beyond_the_frame_raises_like_pymodbus() -> None:
    """A byte count larger than the data is a ModbusIOException, as in pymodbus."""
    with pytest.raises(ModbusIOException, match="byte_count 8 > length of packet 5"):
        HoldingRegisters().decode(bytes([8, 0, 1, 0, 2]))
    with pytest.raises(ModbusIOException):
        ReadHoldingRegistersResponse().decode(bytes([8, 0, 1, 0, 2]))


@pytest.mark.parametrize(
    ("cls", "attr", "values", "what"),
    [
        (HoldingRegisters, "registers", [1, 2, 3], "3 registers"),
        (InputRegisters, "registers", [9], "1 registers"),
        (Coils, "bits", [True] * 8, "8 bits"),
        (DiscreteInputs, "bits", [False] * 16, "16 bits"),
    ],
)
def test_str_is_short_unless_pymodbus_logs_debug(
    pymodbus_debug: logging.Logger, cls: Any, attr: str, values: list[Any], what: str
) -> None:
    """With pymodbus' log above DEBUG the text is short; at DEBUG it is pymodbus' full text."""
    pdu = cls()
    setattr(pdu, attr, values)
    pymodbus_debug.setLevel(logging.WARNING)
    assert str(pdu) == f"{cls.__name__}(dev_id=0, {what})"
    pymodbus_debug.setLevel(logging.DEBUG)
    assert str(pdu) == ModbusPDU.__str__(pdu)
    assert f"{attr}={values}" in str(pdu)


@pytest.mark.integration
async def test_a_link_never_formats_responses_while_debug_is_off(
    model: Model,
    tcp_server: TcpServer,
    pymodbus_debug: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Polling a real server: good values, and pymodbus' full response text is never built.

    pymodbus 3.16 passes ``str(pdu)`` to a debug call for every response it decodes;
    with the standard response classes this test counts one full formatting per read.
    """
    formatted: list[str] = []
    full = ModbusPDU.__str__

    def counting(self: ModbusPDU) -> str:
        formatted.append(type(self).__name__)
        return full(self)

    monkeypatch.setattr(ModbusPDU, "__str__", counting)
    pymodbus_debug.setLevel(logging.WARNING)
    unit = model.unit(1)
    unit.holding.update({i: 100 + i for i in range(125)})
    unit.coils[3] = True
    tags: dict[str, Any] = {f"h{i}": {"table": "holding", "address": i} for i in range(125)}
    tags["c"] = {"table": "coil", "address": 3}
    dev = make_device(
        "m1",
        protocol="modbus_tcp",
        endpoint=f"127.0.0.1:{tcp_server.port}",
        unit_id=1,
        addressing="zero",
        interval_ms=100,
        timeout_ms=500,
        tags=tags,
    )
    (link,) = build_links([dev])
    async with running([link]) as sink:
        await sink.wait_for(lambda: len(sink.batches) >= 3, 5, "three polls")
    batch = {r.tag: r for r in sink.batches[0]}
    assert all(r.quality is Quality.GOOD for r in batch.values())
    assert [batch[f"h{i}"].value for i in range(125)] == [100 + i for i in range(125)]
    assert batch["c"].value is True
    assert formatted == []
