"""The PLC face of one machine: cached register images, scratch memory, comms quirks.

A :class:`MachineDevice` wraps a :class:`~simulators.model.Machine` for the
front ends. It rebuilds the Modbus register and bit images only when the
model changed (version or sim time), keeps the writable scratch area, and
answers the per-request quirk questions (outage mode, response delay, busy).
With a ``now`` callable (the host passes its clock) every access first
advances the model to the current sim time, so a Modbus reply shows the
state at the instant it is built, not as of the last tick; the model is
event-driven, so this changes nothing in the truth. Not thread-safe; use
from the event loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from simulators.model import Machine, Snapshot
from simulators.registers import (
    COIL_COUNT,
    REGISTER_COUNT,
    WRITABLE_COILS,
    WRITABLE_REGISTERS,
    build_bits,
    build_registers,
)
from simulators.scenario import MachineSpec, OutageMode


class MachineDevice:
    """One unit id / OPC-UA object backed by a machine model.

    Args:
        machine: The model; its current state is what the device shows.
        busy_seed: Seed of the generator deciding "server busy" replies (wire
            behaviour only, never part of the truth file).
        now: Current sim time; when given, the model is advanced on every access.
    """

    def __init__(
        self, machine: Machine, busy_seed: int = 0, now: Callable[[], float] | None = None
    ) -> None:
        self.machine = machine
        self._now = now
        self.spec: MachineSpec = machine.spec
        self.holes = frozenset(self.spec.quirks.holes)
        self.response_delay_s = self.spec.quirks.response_delay_ms / 1000.0
        self._busy_rng = random.Random(f"busy:{busy_seed}:{self.spec.id}")
        self._scratch_regs = [0] * len(WRITABLE_REGISTERS)
        self._scratch_bits = [False] * len(WRITABLE_COILS)
        self._key: tuple[int, float, int] | None = None
        self._snap: Snapshot | None = None
        self._regs: list[int] = [0] * REGISTER_COUNT
        self._bits: list[bool] = [False] * COIL_COUNT
        self._writes = 0

    def set_time_source(self, now: Callable[[], float] | None) -> None:
        """Advance the model on every access from now on (None: never)."""
        self._now = now

    def sync(self) -> None:
        """Advance the model to the current sim time (no-op without ``now``)."""
        if self._now is not None:
            self.machine.advance_to(self._now())

    @property
    def outage_mode(self) -> OutageMode | None:
        """How the device is failing to communicate, or None when it answers."""
        self.sync()
        return self.machine.outage_mode

    def busy(self) -> bool:
        """Whether this request gets a "server device busy" exception (quirk ``busy_rate``)."""
        rate = self.spec.quirks.busy_rate
        return rate > 0 and self._busy_rng.random() < rate

    def _refresh(self) -> None:
        self.sync()
        m = self.machine
        key = (m.version, m.t, self._writes)
        if key == self._key:
            return
        self._key = key
        self._snap = m.snapshot()
        self._regs = build_registers(self._snap, self.spec, self._scratch_regs)
        self._bits = build_bits(self._snap, self._scratch_bits)

    def snapshot(self) -> Snapshot:
        """The model's current snapshot (cached)."""
        self._refresh()
        assert self._snap is not None  # noqa: S101  # _refresh always sets it
        return self._snap

    def registers(self) -> list[int]:
        """The holding/input register image (do not mutate)."""
        self._refresh()
        return self._regs

    def bits(self) -> list[bool]:
        """The coil/discrete-input image (do not mutate)."""
        self._refresh()
        return self._bits

    def write_registers(self, address: int, values: list[int]) -> bool:
        """Write scratch registers; False (nothing written) if any address is read-only."""
        end = address + len(values)
        if address < WRITABLE_REGISTERS.start or end > WRITABLE_REGISTERS.stop:
            return False
        base = WRITABLE_REGISTERS.start
        self._scratch_regs[address - base : end - base] = values
        self._writes += 1
        return True

    def write_coils(self, address: int, values: list[bool]) -> bool:
        """Write scratch coils; False (nothing written) if any address is read-only."""
        end = address + len(values)
        if address < WRITABLE_COILS.start or end > WRITABLE_COILS.stop:
            return False
        base = WRITABLE_COILS.start
        self._scratch_bits[address - base : end - base] = values
        self._writes += 1
        return True
