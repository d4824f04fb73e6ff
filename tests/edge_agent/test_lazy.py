"""Packages' lazy members (edge_agent/lazy.py)."""

from __future__ import annotations

import pytest

import edge_agent.buffer
import edge_agent.kpi
import edge_agent.uplink
from edge_agent.buffer.store import Buffer
from edge_agent.kpi.calculator import MachineCalculator
from edge_agent.uplink.publisher import Uplink


def test_a_lazy_member_is_the_module_object_and_is_cached() -> None:
    assert edge_agent.buffer.Buffer is Buffer
    assert edge_agent.kpi.MachineCalculator is MachineCalculator
    assert edge_agent.uplink.Uplink is Uplink
    assert vars(edge_agent.buffer)["Buffer"] is Buffer  # read once, kept in the package


@pytest.mark.parametrize("package", [edge_agent.buffer, edge_agent.kpi, edge_agent.uplink])
def test_every_public_name_resolves_and_others_raise(package: object) -> None:
    for name in package.__all__:  # type: ignore[attr-defined]
        assert getattr(package, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        package.Nope  # type: ignore[attr-defined]  # noqa: B018
