"""Planner: fewest requests within protocol limits and max_gap, grouping by interval, bisection."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.config import ModbusTable
from drivers.modbus.planner import describe_plan, plan_device, split_block
from tests.drivers.modbus.conftest import make_device


def device(tags: dict[str, dict[str, Any]], **over: Any) -> Any:
    data: dict[str, Any] = {
        "protocol": "modbus_tcp",
        "endpoint": "127.0.0.1:5020",
        "unit_id": 1,
        "addressing": "zero",
        "tags": tags,
    }
    data.update(over)
    return make_device(**data)


def test_adjacent_and_small_gaps_coalesce_into_one_block() -> None:
    """Tags within max_gap of each other share one request covering exactly their span."""
    dev = device(
        {
            "a": {"table": "holding", "address": 0, "type": "uint16"},
            "b": {"table": "holding", "address": 1, "type": "float32"},
            "c": {"table": "holding", "address": 19, "type": "uint32"},
        }
    )
    (interval,) = plan_device(dev).intervals
    (block,) = interval.blocks
    assert (block.table, block.start, block.count) == (ModbusTable.HOLDING, 0, 21)
    assert [(t.name, t.offset) for t in block.tags] == [("a", 0), ("b", 1), ("c", 19)]


def test_gap_larger_than_max_gap_splits() -> None:
    """A run of unused addresses longer than max_gap starts a new request."""
    dev = device(
        {"a": {"table": "holding", "address": 0}, "b": {"table": "holding", "address": 6}},
        max_gap=4,
    )
    blocks = plan_device(dev).intervals[0].blocks
    assert [(b.start, b.count) for b in blocks] == [(0, 1), (6, 1)]


def test_protocol_limits_give_the_minimum_number_of_requests() -> None:
    """300 consecutive registers need 3 requests (125 max); 2100 coils need 2 (2000 max)."""
    tags = {f"r{i}": {"table": "input", "address": i} for i in range(300)}
    tags |= {f"c{i}": {"table": "coil", "address": i} for i in range(2100)}
    blocks = plan_device(device(tags)).intervals[0].blocks
    regs = [b for b in blocks if b.table is ModbusTable.INPUT]
    coils = [b for b in blocks if b.table is ModbusTable.COIL]
    assert [(b.start, b.count) for b in regs] == [(0, 125), (125, 125), (250, 50)]
    assert [(b.start, b.count) for b in coils] == [(0, 2000), (2000, 100)]
    assert all(b.count <= 125 for b in regs)


def test_a_multi_register_value_never_straddles_two_requests() -> None:
    """A float32 at the block limit starts the next block instead of being cut in half."""
    tags = {f"r{i}": {"table": "holding", "address": i} for i in range(124)}
    tags["f"] = {"table": "holding", "address": 124, "type": "float32"}
    blocks = plan_device(device(tags)).intervals[0].blocks
    assert [(b.start, b.count) for b in blocks] == [(0, 124), (124, 2)]


def test_tables_and_intervals_are_planned_separately() -> None:
    """Different tables never share a request; a slower tag gets its own interval group."""
    dev = device(
        {
            "h": {"table": "holding", "address": 0},
            "i": {"table": "input", "address": 1},
            "slow": {"table": "holding", "address": 1, "interval_ms": 5000},
        }
    )
    plan = plan_device(dev)
    assert plan.requests_per_cycle == {1000: 2, 5000: 1}
    assert plan.intervals[1].blocks[0].tag_names == ("slow",)


def test_split_block_bisects_and_rebases_offsets() -> None:
    """Splitting a block yields two halves whose offsets are relative to their own start."""
    dev = device(
        {n: {"table": "holding", "address": a} for n, a in [("a", 0), ("b", 2), ("c", 5), ("d", 9)]}
    )
    block = plan_device(dev).intervals[0].blocks[0]
    halves = split_block(block)
    assert halves is not None
    left, right = halves
    assert (left.start, left.count, left.tag_names) == (0, 3, ("a", "b"))
    assert (right.start, right.count, right.tag_names) == (5, 5, ("c", "d"))
    assert [t.offset for t in right.tags] == [0, 4]
    single = split_block(halves[0])
    assert single is not None
    assert split_block(single[0]) is None


def test_describe_plan_lists_requests_and_blocks() -> None:
    """The printed plan shows requests per cycle and every block's table, start, count and tags."""
    text = describe_plan(
        [device({"a": {"table": "holding", "address": 3}, "b": {"table": "holding", "address": 4}})]
    )
    assert "m1 (modbus_tcp tcp://127.0.0.1:5020 unit 1, addressing zero):" in text
    assert "every 1000 ms: 1 request(s) per cycle" in text
    assert "holding" in text
    assert "start 3" in text
    assert "count 2" in text
    assert "tags: a, b" in text


def _valid_group(tags: list[tuple[int, int]], limit: int, max_gap: int) -> bool:
    start = tags[0][0]
    end = start
    for address, width in tags:
        if address - end > max_gap:
            return False
        end = max(end, address + width)
    return end - start <= limit


@given(
    spec=st.lists(
        st.tuples(st.integers(0, 400), st.sampled_from([1, 2, 4])), min_size=1, max_size=40
    ),
    limit=st.integers(4, 125),
    max_gap=st.integers(0, 20),
)
def test_plan_is_valid_and_minimal(spec: list[tuple[int, int]], limit: int, max_gap: int) -> None:
    """For random layouts every tag sits inside one block within limits, with the fewest blocks."""
    types = {1: "uint16", 2: "uint32", 4: "uint64"}
    tags = {
        f"t{i}": {"table": "holding", "address": a, "type": types[w]}
        for i, (a, w) in enumerate(spec)
    }
    dev = device(tags, max_block_registers=limit, max_gap=max_gap)
    blocks = plan_device(dev).intervals[0].blocks
    placed = sorted(name for b in blocks for name in b.tag_names)
    assert placed == sorted(tags)
    for b in blocks:
        assert b.count <= limit
        for t in b.tags:
            assert t.offset >= 0
            assert t.offset + t.width <= b.count
    # Dynamic programming over address-sorted tags gives the true minimum number of groups.
    ordered = sorted(((a, w) for a, w in spec), key=lambda t: (t[0], -t[1]))
    best = [0] + [len(ordered) + 1] * len(ordered)
    for i in range(1, len(ordered) + 1):
        for j in range(i):
            if _valid_group(ordered[j:i], limit, max_gap):
                best[i] = min(best[i], best[j] + 1)
    assert len(blocks) == best[-1]


def test_devices_of_one_model_share_their_planned_tags() -> None:
    """Equal tags at equal places are one PlannedTag object (memory at 100 devices)."""
    tags = {f"r{i}": {"table": "holding", "address": i} for i in range(10)}
    a = plan_device(device(tags))
    b = plan_device(device(tags, unit_id=2))
    (ta,) = (blk.tags for ip in a.intervals for blk in ip.blocks)
    (tb,) = (blk.tags for ip in b.intervals for blk in ip.blocks)
    assert ta == tb
    assert all(x is y for x, y in zip(ta, tb, strict=True))
