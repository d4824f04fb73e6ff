"""Technician tools: read raw registers and show every interpretation; test-read configured tags.

:func:`read_raw` reads a window of registers (one below and one above the
requested range, to expose the zero/one-based confusion), :func:`interpret`
decodes that window in every type and byte order at the requested address
and shifted by one either way, and marks what matches an expected value;
:func:`format_probe` renders it for ``edge-agent probe modbus``.
:func:`probe_devices` connects to every configured device once and reads
every tag on its own, so each tag gets its own verdict (ok with the value,
or bad with the reason) for ``edge-agent check-config --probe``.

It never writes to a device and never retries beyond the device's own
``retries``; links are closed before returning.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

from pymodbus.exceptions import ModbusException

from drivers.base import DeviceDiagnostics, ProbeResult
from drivers.modbus.codec import DataType, WordOrder, make_decoder, register_width
from drivers.modbus.config import (
    Addressing,
    ModbusDeviceConfig,
    ModbusTable,
    SerialTransport,
    TcpTransport,
)
from drivers.modbus.link import ExceptionReply, ModbusLink, UnitTimeout
from drivers.modbus.planner import Block, plan_device, single_tag_blocks
from edge_agent.errors import DecodeError, DeviceUnavailable
from edge_agent.model import Value

#: Types shown by the raw probe, in display order.
PROBE_TYPES = (
    DataType.INT16,
    DataType.UINT16,
    DataType.INT32,
    DataType.UINT32,
    DataType.FLOAT32,
    DataType.INT64,
    DataType.UINT64,
    DataType.FLOAT64,
    DataType.STRING,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RawRead:
    """Registers (or bits) read around the requested range."""

    table: ModbusTable
    start: int
    words: tuple[int, ...]
    requested: int
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Interpretation:
    """The requested range decoded as one type in one order at one address shift."""

    shift: int
    dtype: DataType
    order: WordOrder
    values: tuple[Value, ...]
    matches: bool
    match_addresses: tuple[int, ...] = ()
    """Wire addresses where a value equal to the expected one starts."""


def _orders(dtype: DataType) -> tuple[WordOrder, ...]:
    # For one-register values only the byte swap matters: CDAB == ABCD, DCBA == BADC.
    if register_width(dtype, 2) == 1:
        return (WordOrder.ABCD, WordOrder.BADC)
    return tuple(WordOrder)


def _close(value: Value, expect: float | str) -> bool:
    if isinstance(expect, str):
        return value == expect
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isclose(float(value), expect, rel_tol=1e-6, abs_tol=1e-9)


def interpret(raw: RawRead, expect: float | str | None = None) -> list[Interpretation]:
    """Decode the requested range in every type and order, at shifts -1, 0 and +1.

    Args:
        raw: What :func:`read_raw` returned.
        expect: A value the technician knows the device holds; matches are flagged.
    """
    out: list[Interpretation] = []
    for shift in (0, -1, 1):
        first = raw.requested + shift - raw.start
        if first < 0 or first + raw.count > len(raw.words):
            continue
        window = raw.words[first : first + raw.count]
        for dtype in PROBE_TYPES:
            length = 2 * raw.count if dtype is DataType.STRING else 0
            width = register_width(dtype, length)
            if width > len(window):
                continue
            for order in _orders(dtype):
                decode = make_decoder(dtype, order, length=length)
                values: list[Value] = []
                hits: list[int] = []
                for i in range(0, len(window) - width + 1, width):
                    try:
                        values.append(decode(window, i))
                    except DecodeError:
                        values.append(None)
                    if expect is not None and _close(values[-1], expect):
                        hits.append(raw.requested + shift + i)
                out.append(
                    Interpretation(
                        shift=shift,
                        dtype=dtype,
                        order=order,
                        values=tuple(values),
                        matches=bool(hits),
                        match_addresses=tuple(hits),
                    )
                )
    return out


def format_probe(raw: RawRead, where: str, expect: float | str | None = None) -> str:
    """Render raw words and every interpretation as text for the terminal."""
    lines = [
        f"{where}: {raw.table.value} {raw.start}..{raw.start + len(raw.words) - 1}"
        f" (requested {raw.requested}..{raw.requested + raw.count - 1}, zero-based wire addresses)"
    ]
    for i, w in enumerate(raw.words):
        mark = "*" if raw.requested <= raw.start + i < raw.requested + raw.count else " "
        text = f"{int(w)}" if raw.table.is_bits else f"0x{w:04X} {w:>5}"
        lines.append(f" {mark} {raw.start + i:>5}: {text}")
    if raw.table.is_bits:
        return "\n".join(lines)
    titles = {
        0: "as requested",
        -1: "one lower (config one-based, device zero-based?)",
        1: "one higher (config zero-based, device one-based?)",
    }
    matches: dict[str, None] = {}
    current = None
    for it in interpret(raw, expect):
        if it.shift != current:
            current = it.shift
            lines.append(f"Decoded at {raw.requested + it.shift} ({titles[it.shift]}):")
        shown = ", ".join("?" if v is None else repr(v) for v in it.values)
        flag = "   <== matches --expect" if it.matches else ""
        lines.append(f"  {it.dtype.value:<8} {it.order.value}: {shown}{flag}")
        for address in it.match_addresses:
            offset = address - raw.requested
            rel = f" (requested {offset:+d})" if offset else ""
            matches[f"{it.dtype.value} {it.order.value} at address {address}{rel}"] = None
    if expect is not None:
        lines.append(f"Matches for {expect!r}: " + ("; ".join(matches) if matches else "none"))
    return "\n".join(lines)


async def read_raw(
    transport: TcpTransport | SerialTransport,
    *,
    unit_id: int,
    table: ModbusTable,
    address: int,
    count: int,
    timeout_ms: int = 1000,
) -> RawRead:
    """Read ``count`` words at a zero-based ``address`` plus one on each side when possible.

    Raises:
        DeviceUnavailable: The endpoint or port cannot be opened, or the read timed out.
        ExceptionReply: The device answered with a Modbus exception.
    """
    limit = 2000 if table.is_bits else 125
    start = max(0, address - 1)
    end = min(65536, address + count + 1, start + limit)
    device = ModbusDeviceConfig(
        name="probe",
        protocol="modbus_tcp" if isinstance(transport, TcpTransport) else "modbus_rtu",
        transport=transport,
        unit_id=unit_id,
        interval_ms=1000,
        addressing=Addressing.ZERO,
        timeout_ms=timeout_ms,
    )
    link = ModbusLink([device])
    await link.connect()
    try:
        block = Block(unit_id=unit_id, table=table, start=start, count=end - start, tags=())
        try:
            words, _, _ = await link.read_block(device, block, DeviceDiagnostics())
        except UnitTimeout as exc:
            raise DeviceUnavailable(f"unit {unit_id} on {link.name}: {exc}") from exc
        except ExceptionReply:
            if (start, end) == (address, address + count):
                raise
            # The padding may hit an illegal address: retry with exactly what was asked.
            block = Block(unit_id=unit_id, table=table, start=address, count=count, tags=())
            words, _, _ = await link.read_block(device, block, DeviceDiagnostics())
            start = address
    finally:
        await link.close()
    return RawRead(
        table=table,
        start=start,
        words=tuple(int(w) for w in words[: block.count]),
        requested=address,
        count=count,
    )


async def _probe_link(devices: Sequence[ModbusDeviceConfig]) -> list[ProbeResult]:
    link = ModbusLink(devices)
    try:
        await link.connect()
    except DeviceUnavailable as exc:
        return [
            ProbeResult(device=d.name, tag=t, ok=False, reason=f"connect failed: {exc}")
            for d in devices
            for t in d.tag_names
        ]
    results: list[ProbeResult] = []
    try:
        for device in devices:
            diag = DeviceDiagnostics()
            silent = False
            blocks = [
                b
                for p in plan_device(device).intervals
                for blk in p.blocks
                for b in single_tag_blocks(blk)
            ]
            by_name = {b.tags[0].name: b for b in blocks}
            for name in device.tag_names:
                block = by_name[name]
                if silent:
                    results.append(
                        ProbeResult(device=device.name, tag=name, ok=False, reason="timeout")
                    )
                    continue
                results.append(await _probe_tag(link, device, block, diag))
                silent = results[-1].reason == "timeout"
    except DeviceUnavailable as exc:
        done = {(r.device, r.tag) for r in results}
        results.extend(
            ProbeResult(device=d.name, tag=t, ok=False, reason=f"connection lost: {exc}")
            for d in devices
            for t in d.tag_names
            if (d.name, t) not in done
        )
    finally:
        await link.close()
    return results


async def _probe_tag(
    link: ModbusLink, device: ModbusDeviceConfig, block: Block, diag: DeviceDiagnostics
) -> ProbeResult:
    tag = block.tags[0]
    try:
        words, _, _ = await link.read_block(device, block, diag)
        value = tag.decode(words, tag.offset)
    except UnitTimeout as exc:
        return ProbeResult(device=device.name, tag=tag.name, ok=False, reason=str(exc))
    except ExceptionReply as exc:
        return ProbeResult(device=device.name, tag=tag.name, ok=False, reason=exc.reason)
    except DecodeError as exc:
        return ProbeResult(
            device=device.name, tag=tag.name, ok=False, reason=f"decode error: {exc}"
        )
    except ModbusException as exc:
        return ProbeResult(
            device=device.name, tag=tag.name, ok=False, reason=f"protocol error: {exc}"
        )
    return ProbeResult(device=device.name, tag=tag.name, ok=True, value=value)


async def probe_devices(devices: Sequence[object]) -> list[ProbeResult]:
    """Connect to every device and read each tag once; results in device and tag order.

    Links are probed concurrently (one task per endpoint or serial port), the
    devices of one link one after another. A device that times out on one tag
    has its remaining tags reported as timeouts without waiting for each.
    """
    groups: dict[str, list[ModbusDeviceConfig]] = {}
    for device in devices:
        if isinstance(device, ModbusDeviceConfig):
            groups.setdefault(device.link_key, []).append(device)
    per_link = await asyncio.gather(*(_probe_link(members) for members in groups.values()))
    order = {
        (d.name, t): i
        for i, (d, t) in enumerate(
            (d, t) for d in devices if isinstance(d, ModbusDeviceConfig) for t in d.tag_names
        )
    }
    return sorted(
        (r for results in per_link for r in results), key=lambda r: order[(r.device, r.tag)]
    )
