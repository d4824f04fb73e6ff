"""Pure request planner: coalesce configured tags into the fewest block reads.

Tags of one device are grouped by poll interval, then by table; inside a
group they are sorted by address and merged greedily into blocks that respect
the protocol limits (125 registers, 2000 bits, or the device's smaller
``max_block_*``) and the device's ``max_gap`` (unused addresses allowed inside
a block). Scanning left to right and closing a block only when the next tag
cannot join is optimal for this one-dimensional covering problem, so the plan
uses the minimum number of requests for the given limits.

This module does no I/O and never talks to a device. The plan is an
immutable value, computed once at start, printable with :func:`describe_plan`
and testable without hardware. :func:`split_block` supports the link's
isolation of an illegal address by bisection.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

from drivers.modbus.codec import (
    BlockDecoder,
    Decoder,
    Field,
    make_block_decoder,
    make_decoder,
    struct_char,
)
from drivers.modbus.config import ModbusDeviceConfig, ModbusTable, ModbusTag


@dataclass(frozen=True, slots=True, kw_only=True, weakref_slot=True)
class PlannedTag:
    """A tag inside a block: where its value starts and the decoder chosen for it.

    Immutable and shared: devices with the same tag at the same place in a block (one
    machine model on many devices) hold one instance (:func:`_planned`).
    """

    name: str
    offset: int
    width: int
    decode: Decoder
    # For the block decoder: struct character ("" = decode this tag on its own), scaling.
    fmt: str = ""
    scale: float = 1.0
    add: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """One read request: a contiguous address range of one table on one unit id."""

    unit_id: int
    table: ModbusTable
    start: int
    count: int
    tags: tuple[PlannedTag, ...]
    #: Every tag's value with one ``struct`` unpack (None: decode tag by tag).
    decode_all: BlockDecoder | None = field(default=None, compare=False, repr=False)
    #: The tags' names, one tuple per block for its lifetime (readings of every poll of
    #: the block share it: :class:`~edge_agent.columns.Column`).
    names: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def tag_names(self) -> tuple[str, ...]:
        """Names of the tags this block serves."""
        return tuple(t.name for t in self.tags)


@dataclass(frozen=True, slots=True, kw_only=True)
class IntervalPlan:
    """All blocks of one device polled at one interval."""

    interval_ms: int
    blocks: tuple[Block, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DevicePlan:
    """The read plan of one device, one entry per distinct poll interval (fastest first)."""

    device: str
    unit_id: int
    intervals: tuple[IntervalPlan, ...]

    @property
    def requests_per_cycle(self) -> dict[int, int]:
        """Requests per cycle of each interval."""
        return {p.interval_ms: len(p.blocks) for p in self.intervals}


# Planned tags in use, by value: 100 devices of one model kept 12,500 copies of 125 tags
# (1.1 MB at the gateway benchmark, issue 20).
_PLANNED: weakref.WeakValueDictionary[tuple[object, ...], PlannedTag] = (
    weakref.WeakValueDictionary()
)


def _planned(tag: ModbusTag, start: int) -> PlannedTag:
    decode = make_decoder(
        tag.dtype,
        tag.word_order,
        bit=tag.bit,
        length=tag.length,
        scale=tag.scale,
        offset=tag.offset,
    )
    fmt = "" if tag.table.is_bits else struct_char(tag.dtype, tag.word_order)
    offset = tag.address - start
    key = (tag.name, offset, tag.width, decode, fmt, tag.scale, tag.offset)
    found = _PLANNED.get(key)
    if found is None:
        found = PlannedTag(
            name=tag.name,
            offset=offset,
            width=tag.width,
            decode=decode,
            fmt=fmt,
            scale=tag.scale,
            add=tag.offset,
        )
        _PLANNED[key] = found
    return found


def _block(
    *, unit_id: int, table: ModbusTable, start: int, count: int, tags: tuple[PlannedTag, ...]
) -> Block:
    fields = [Field(t.offset, t.fmt, t.scale, t.add) for t in tags]
    return Block(
        unit_id=unit_id,
        table=table,
        start=start,
        count=count,
        tags=tags,
        decode_all=None if table.is_bits else make_block_decoder(fields, count),
        names=tuple(t.name for t in tags),
    )


def coalesce(
    tags: Sequence[ModbusTag], *, unit_id: int, table: ModbusTable, limit: int, max_gap: int
) -> list[Block]:
    """Merge tags of one table into the fewest blocks of at most ``limit`` addresses.

    Args:
        tags: Tags of one table (any order); each must be at most ``limit`` wide.
        unit_id: Unit id the blocks are addressed to.
        table: The table of every tag.
        limit: Maximum addresses per request.
        max_gap: Maximum run of unused addresses allowed between two tags of a block.

    Returns:
        Blocks in address order.
    """
    ordered = sorted(tags, key=lambda t: (t.address, -t.width, t.name))
    groups: list[tuple[int, int, list[ModbusTag]]] = []
    for tag in ordered:
        end = tag.address + tag.width
        if groups:
            start, cur_end, members = groups[-1]
            if tag.address - cur_end <= max_gap and max(cur_end, end) - start <= limit:
                groups[-1] = (start, max(cur_end, end), [*members, tag])
                continue
        groups.append((tag.address, end, [tag]))
    return [
        _block(
            unit_id=unit_id,
            table=table,
            start=start,
            count=end - start,
            tags=tuple(_planned(t, start) for t in members),
        )
        for start, end, members in groups
    ]


def plan_device(device: ModbusDeviceConfig) -> DevicePlan:
    """Compute the read plan of one device."""
    by_interval: dict[int, list[ModbusTag]] = {}
    for tag in device.tags:
        by_interval.setdefault(tag.interval_ms, []).append(tag)
    intervals: list[IntervalPlan] = []
    for interval in sorted(by_interval):
        blocks: list[Block] = []
        for table in ModbusTable:
            members = [t for t in by_interval[interval] if t.table is table]
            if not members:
                continue
            limit = device.max_block_bits if table.is_bits else device.max_block_registers
            blocks.extend(
                coalesce(
                    members,
                    unit_id=device.unit_id,
                    table=table,
                    limit=limit,
                    max_gap=device.max_gap,
                )
            )
        intervals.append(IntervalPlan(interval_ms=interval, blocks=tuple(blocks)))
    return DevicePlan(device=device.name, unit_id=device.unit_id, intervals=tuple(intervals))


def _sub_block(block: Block, tags: Sequence[PlannedTag]) -> Block:
    start = block.start + min(t.offset for t in tags)
    end = block.start + max(t.offset + t.width for t in tags)
    shift = start - block.start
    moved = tuple(
        PlannedTag(
            name=t.name,
            offset=t.offset - shift,
            width=t.width,
            decode=t.decode,
            fmt=t.fmt,
            scale=t.scale,
            add=t.add,
        )
        for t in tags
    )
    return _block(
        unit_id=block.unit_id, table=block.table, start=start, count=end - start, tags=moved
    )


def split_block(block: Block) -> tuple[Block, Block] | None:
    """Split a block's tags into two halves (in address order); None for a single tag."""
    if len(block.tags) < 2:
        return None
    ordered = sorted(block.tags, key=lambda t: (t.offset, t.name))
    half = len(ordered) // 2
    return _sub_block(block, ordered[:half]), _sub_block(block, ordered[half:])


def single_tag_blocks(block: Block) -> list[Block]:
    """One block per tag of ``block`` (used by the probe to test every tag on its own)."""
    return [_sub_block(block, [t]) for t in block.tags]


def describe_plan(devices: Sequence[object]) -> str:
    """Human-readable plan: requests per device per cycle and every block's range and tags."""
    lines: list[str] = []
    for device in devices:
        if not isinstance(device, ModbusDeviceConfig):
            continue
        plan = plan_device(device)
        lines.append(
            f"{device.name} ({device.protocol} {device.transport.key} unit {device.unit_id},"
            f" addressing {device.addressing.value}):"
        )
        for interval in plan.intervals:
            lines.append(
                f"  every {interval.interval_ms} ms: {len(interval.blocks)} request(s) per cycle"
            )
            for b in interval.blocks:
                lines.append(
                    f"    {b.table.value:<14} start {b.start:<5} count {b.count:<4}"
                    f" tags: {', '.join(b.tag_names)}"
                )
    return "\n".join(lines)
