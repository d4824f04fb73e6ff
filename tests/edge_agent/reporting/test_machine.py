"""Live machines: state from the calculator, restore after a crash, reconfiguration kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer, StorageConfig
from edge_agent.kpi import MachineState
from edge_agent.reporting.machine import MachineSet
from tests.edge_agent.reporting.test_reporter import T0, config, feed, poll


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    buf = Buffer(StorageConfig(path=tmp_path / "b.db"), "gw")
    await buf.open()
    yield buf
    await buf.close()


async def test_state_fault_and_since_come_from_the_calculator(
    tmp_path: Path, buffer: Buffer
) -> None:
    """Running, then stopped with a fault code: state, fault and 'since' follow the samples."""
    cfg = config(tmp_path)
    machines = MachineSet(buffer, cfg.reporting)
    await machines.start(cfg.machines)
    lm = machines["m"]
    assert (lm.state, lm.fault, lm.since) == (MachineState.UNKNOWN, None, None)
    feed(machines, T0, 5)
    assert (lm.state, lm.since) == (MachineState.RUNNING, T0)
    batch = [r._replace(value=False) if r.tag == "running" else r for r in poll(T0 + 6, 3)]
    machines.feed(machines.by_device["a"], batch, synced=True)
    assert (lm.state, lm.fault, lm.since) == (MachineState.STOPPED, None, T0 + 6)


async def test_a_restart_continues_the_calculator_and_marks_the_outage_unknown(
    tmp_path: Path, buffer: Buffer
) -> None:
    """Saved state of the same profile is restored; the time after the last sample is unknown."""
    cfg = config(tmp_path)
    first = MachineSet(buffer, cfg.reporting)
    await first.start(cfg.machines)
    feed(first, T0, 10)
    await buffer.save_state("calc:m", first["m"].saved_state())
    second = MachineSet(buffer, cfg.reporting)
    await second.start(cfg.machines)
    lm = second["m"]
    assert lm.state is MachineState.UNKNOWN
    assert lm.since == pytest.approx(T0 + 10.001)
    assert lm.calc.window_names() == first["m"].calc.window_names()


async def test_a_reconfigured_machine_keeps_its_window_names_across_a_restart(
    tmp_path: Path, buffer: Buffer
) -> None:
    """After a profile change the '~<reload>' names survive a restart (saved with the state)."""
    cfg = config(tmp_path)
    machines = MachineSet(buffer, cfg.reporting)
    await machines.start(cfg.machines)
    feed(machines, T0, 10)
    changed = config(tmp_path, ict=3.0)
    await machines.reload(changed.machines, changed.reporting, clock=lambda: T0 + 10.5)
    feed(machines, T0 + 11, 5)
    names = machines["m"].calc.window_names()
    assert names == ["day:2026-11-26~2026-11-26T10:00:10.500Z"]
    await buffer.save_state("calc:m", machines["m"].saved_state())
    again = MachineSet(buffer, changed.reporting)
    await again.start(changed.machines)
    assert again["m"].reconfigured_at == T0 + 10.5
    feed(again, T0 + 20, 1)
    assert again["m"].calc.window_names() == names
