"""The in-process host with a real scaled clock, and a long model soak."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from simulators.clock import ManualClock, ScaledClock
from simulators.host import SimulatorHost
from simulators.model import Machine
from simulators.scenario import load_scenario

SimFactory = Callable[..., Awaitable[SimulatorHost]]


@pytest.mark.integration
async def test_scaled_clock_drives_the_front_end(sim_factory: SimFactory) -> None:
    """With a real clock at speed 100 the tick task advances counters visible over Modbus."""
    sim = await sim_factory("steady", manual=False, speed=100.0, tick_s=0.02)
    info = sim.ready_info()
    assert info["modbus_tcp"]["port"] == sim.modbus_port
    assert info["machines"] == {"M1": {"unit_id": 1}}
    c = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus_port, timeout=1.0, retries=0)
    assert await c.connect()
    try:
        first = (await c.read_holding_registers(16, count=1, device_id=1)).registers[0]
        deadline = time.monotonic() + 5.0
        value = first
        while value < first + 10 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            value = (await c.read_holding_registers(16, count=1, device_id=1)).registers[0]
        assert value >= first + 10  # >= 20 sim seconds passed at a 2 s cycle
    finally:
        c.close()


async def test_force_fault_through_handle(sim_factory: SimFactory) -> None:
    """A handle's force_fault shows at once in the snapshot and ends after its duration."""
    sim = await sim_factory("steady", modbus=False)
    await sim.advance(10.0)
    sim.machine("M1").force_fault(17, 5.0)
    assert sim.machine("M1").snapshot().fault_code == 17
    await sim.advance(5.0)
    assert sim.machine("M1").snapshot().fault_code == 0
    with pytest.raises(KeyError):
        sim.machine("nope")


def test_clocks() -> None:
    """ScaledClock maps sim time to wall time at 1/speed; ManualClock refuses to go back."""
    c = ScaledClock(speed=10.0, epoch0=1000.0)
    assert c.wall_ts(50.0) == 1005.0
    m = ManualClock()
    m.advance(3.0)
    with pytest.raises(ValueError, match="backwards"):
        m.set(1.0)
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(speed=0)


def _soak(days: float) -> None:
    for spec in load_scenario("demo").machines:
        records: list[dict[str, Any]] = []
        m = Machine(spec, seed=11, wall_ts=ManualClock().wall_ts, record=records.append)
        t = 0.0
        while t < days * 86_400:
            t += 3600.0
            m.advance_to(t)
        m.close()
        iv = [r for r in records if r["type"] == "interval"]
        assert iv[-1]["end_s"] == t
        assert sum(r["end_s"] - r["start_s"] for r in iv) == pytest.approx(t)
        assert sum(r["parts_good"] + r["parts_scrap"] for r in iv) == m.total
        assert all(r["end_s"] > r["start_s"] for r in iv if not r.get("open"))


def test_model_invariants_one_day() -> None:
    """Over one sim day every demo machine's intervals tile time and account for every part."""
    _soak(1)


@pytest.mark.soak
def test_model_invariants_thirty_days() -> None:
    """The same invariants hold over thirty sim days."""
    _soak(30)
