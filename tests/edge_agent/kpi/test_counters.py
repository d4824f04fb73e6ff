"""The counter delta rule of spec §3.7, case by case, with hand arithmetic."""

from __future__ import annotations

import pytest

from edge_agent.kpi.engine import _delta

M32 = 1 << 32
M16 = 1 << 16


@pytest.mark.parametrize(
    ("prev", "cur", "modulus", "limit", "expected"),
    [
        (100, 250, M32, 10, (150, None)),  # normal: 250 - 100
        (100, 100, M32, 10, (0, None)),  # no parts
        (65530, 4, M16, 20, (10, "counter_wrap")),  # 4 + 65536 - 65530 = 10 <= 20
        (65530, 4, M16, 9, (4, "counter_reset")),  # wrap 10 > 9, cur 4 <= 9 -> delta = cur
        (1810, 0, M32, 300, (0, "counter_reset")),  # V04: PLC restart to 0
        (270, 269, M32, 30, (0, "counter_anomaly")),  # V04: one-count correction
        (5000, 1, M32, 1, (1, "counter_reset")),  # limit floor of 1 still allows a reset to 1
    ],
)
def test_delta_rule(
    prev: int, cur: int, modulus: int, limit: int, expected: tuple[int, str | None]
) -> None:
    """Each branch of normal / wrap / reset / anomaly gives the documented delta and flag."""
    assert _delta(prev, cur, modulus, limit) == expected
