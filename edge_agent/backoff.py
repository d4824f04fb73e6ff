"""Exponential backoff with full jitter: the one reconnect policy of links and the uplink.

Used by :func:`drivers.base.run_link` (every PLC link), the Modbus driver's per-unit
retries and the MQTT uplink's reconnect loop, so a gateway that loses its network
does not hammer anything in lock-step. Pure: no clock, only ``random``.
"""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with full jitter, bounded."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0, factor: float = 2.0) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.attempt = 0

    def next_delay(self) -> float:
        """Delay before the next attempt: uniform in [cap/2, cap] of the current step.

        The step stops growing once it reaches ``max_s``: ``factor ** attempt`` overflows
        a float after about 1,000 attempts (``OverflowError``), which at 30 s each is a
        PLC switched off for one night; the link task must not die of that.
        """
        cap = min(self.max_s, self.initial_s * self.factor**self.attempt)
        if cap < self.max_s:
            self.attempt += 1
        return random.uniform(cap / 2, cap)

    def reset(self) -> None:
        """Start over after a success."""
        self.attempt = 0
