"""Simulation clocks: sim seconds since start, mapped to wall-clock UTC epoch.

A clock answers two questions: "what sim time is it now" (:meth:`SimClock.now`)
and "at which wall-clock epoch did sim time ``t`` happen" (:meth:`SimClock.wall_ts`).
:class:`ScaledClock` runs ``speed`` sim seconds per wall second from the
monotonic clock; :class:`ManualClock` only moves when a test advances it, so
tests never wait in real time and the truth file is byte-identical across runs.

Guarantees: ``now()`` never goes backwards; ``wall_ts`` is affine in ``t``
(``epoch0 + t / speed``), so a transition's wall time is exact, not sampled.
This module does not sleep or schedule anything.
"""

from __future__ import annotations

import time
from typing import Protocol


class SimClock(Protocol):
    """A source of simulated time."""

    @property
    def speed(self) -> float:
        """Sim seconds per wall second."""

    def now(self) -> float:
        """Sim seconds elapsed since the start of the simulation."""

    def wall_ts(self, sim_t: float) -> float:
        """Wall-clock UTC epoch seconds at which sim time ``sim_t`` happened (or will)."""


class ScaledClock:
    """Real-time clock scaled by ``speed`` (sim seconds per wall second).

    Args:
        speed: Sim seconds per wall second; must be positive.
        epoch0: Wall-clock epoch of sim time 0 (default: now).
    """

    __slots__ = ("_epoch0", "_mono0", "_speed")

    def __init__(self, speed: float = 1.0, epoch0: float | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        self._speed = float(speed)
        self._mono0 = time.monotonic()
        self._epoch0 = time.time() if epoch0 is None else epoch0

    @property
    def speed(self) -> float:
        """Sim seconds per wall second."""
        return self._speed

    def reset(self) -> None:
        """Make sim time 0 *now* (the host calls this once its front ends listen)."""
        self._mono0 = time.monotonic()
        self._epoch0 = time.time()

    def now(self) -> float:
        """Sim seconds since the clock was created or reset."""
        return (time.monotonic() - self._mono0) * self._speed

    def wall_ts(self, sim_t: float) -> float:
        """Wall epoch of sim time ``sim_t``."""
        return self._epoch0 + sim_t / self._speed


class ManualClock:
    """A clock that moves only when :meth:`advance` or :meth:`set` is called.

    Args:
        speed: Sim seconds per wall second used for the wall-time mapping.
        epoch0: Wall-clock epoch of sim time 0; fixed so truth files are reproducible.
    """

    __slots__ = ("_epoch0", "_now", "_speed")

    def __init__(self, speed: float = 1.0, epoch0: float = 1_767_225_600.0) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        self._speed = float(speed)
        self._epoch0 = epoch0
        self._now = 0.0

    @property
    def speed(self) -> float:
        """Sim seconds per wall second."""
        return self._speed

    def now(self) -> float:
        """Current sim time."""
        return self._now

    def advance(self, dt: float) -> float:
        """Move sim time forward by ``dt`` seconds and return the new time."""
        if dt < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += dt
        return self._now

    def set(self, t: float) -> None:
        """Jump to sim time ``t`` (not earlier than now)."""
        if t < self._now:
            raise ValueError("a clock cannot go backwards")
        self._now = t

    def wall_ts(self, sim_t: float) -> float:
        """Wall epoch of sim time ``sim_t``."""
        return self._epoch0 + sim_t / self._speed
