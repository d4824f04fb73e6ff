"""Helpers for the Modbus link tests: values for every type and order, a run wrapper."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from drivers.base import Backoff, run_link
from drivers.modbus.codec import DataType, WordOrder
from drivers.modbus.link import ModbusLink
from tests.drivers.modbus.test_codec import registers_for
from tests.drivers.test_contract import RecordingSink

#: (type, a value, its big-endian bytes)
SAMPLES: list[tuple[DataType, Any, bytes]] = [
    (DataType.INT16, -1234, (-1234).to_bytes(2, "big", signed=True)),
    (DataType.UINT16, 0xBEEF, (0xBEEF).to_bytes(2, "big")),
    (DataType.INT32, -123456789, (-123456789).to_bytes(4, "big", signed=True)),
    (DataType.UINT32, 0xDEADBEEF, (0xDEADBEEF).to_bytes(4, "big")),
    (DataType.INT64, -(2**40) - 7, (-(2**40) - 7).to_bytes(8, "big", signed=True)),
    (DataType.UINT64, 2**63 + 12345, (2**63 + 12345).to_bytes(8, "big")),
    (DataType.FLOAT32, 1234.5, bytes.fromhex("449a5000")),
    (DataType.FLOAT64, -2.718281828459045, bytes.fromhex("c005bf0a8b145769")),
]


def typed_tags(holding: dict[int, int]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Tags for every numeric type and order, laid out in ``holding``; returns (tags, expected)."""
    tags: dict[str, dict[str, Any]] = {}
    expected: dict[str, Any] = {}
    address = 0
    for dtype, value, raw in SAMPLES:
        for order in WordOrder:
            name = f"{dtype.value}_{order.value}"
            for i, word in enumerate(registers_for(raw, order)):
                holding[address + i] = word
            tags[name] = {
                "table": "holding",
                "address": address,
                "type": dtype.value,
                "word_order": order.value,
            }
            expected[name] = value
            address += len(raw) // 2
    holding[address] = 0x4142
    holding[address + 1] = 0x4300
    tags["text"] = {"table": "holding", "address": address, "type": "string", "length": 3}
    expected["text"] = "ABC"
    holding[address + 2] = 0x0010
    tags["flag"] = {"table": "holding", "address": address + 2, "type": "bit", "bit": 4}
    expected["flag"] = True
    tags["scaled"] = {
        "table": "holding",
        "address": address + 3,
        "type": "int16",
        "scale": 0.5,
        "offset": 1,
    }
    holding[address + 3] = 10
    expected["scaled"] = 6.0
    return tags, expected


@contextlib.asynccontextmanager
async def running(links: Sequence[ModbusLink]) -> AsyncIterator[RecordingSink]:
    """Run links under run_link with a recording sink; cancel them on exit."""
    sink = RecordingSink()
    tasks = [
        asyncio.create_task(
            run_link(
                link,
                sink,
                tags_by_device=link.tags_by_device,
                backoff=Backoff(initial_s=0.05, max_s=0.2),
            )
        )
        for link in links
    ]
    try:
        yield sink
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
