"""The compacting copy of the agent's configuration: same value, equal scalars shared."""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.modbus.config import ModbusDeviceConfig
from edge_agent import compact
from edge_agent.config import load_config_compact


@dataclass(frozen=True, slots=True)
class _Tag:
    name: str
    scale: float
    interval_ms: int


def test_copy_equals_and_shares_equal_scalars() -> None:
    """Equal strings, ints and floats of the copy are one object each; values unchanged."""
    original = {
        f"d{d}": tuple(_Tag(f"r{r}", float(1), 1000 + 0 * d) for r in range(3)) for d in range(3)
    }
    copy = compact.load(*compact.dump(original))
    assert copy == original
    tags = [t for device in copy.values() for t in device]
    assert len({id(t.scale) for t in tags}) == 1
    assert len({id(t.interval_ms) for t in tags}) == 1
    assert len({id(t.name) for t in tags}) == 3  # r0, r1, r2
    assert all(a is not b for a, b in zip(original["d0"], copy["d0"], strict=True))


def test_signed_zero_nan_bool_and_types_survive() -> None:
    """-0.0 stays apart from 0.0, 1 from 1.0 and True; NaN stays NaN."""
    value = [0.0, -0.0, 1, 1.0, True, False, math.nan, "1", b"1", None]
    copy = compact.load(*compact.dump(value))
    assert [type(v) for v in copy] == [type(v) for v in value]
    assert math.copysign(1.0, copy[1]) == -1.0
    assert math.copysign(1.0, copy[0]) == 1.0
    assert type(copy[2]) is int
    assert copy[4] is True
    assert copy[5] is False
    assert math.isnan(copy[6])
    assert copy[7:] == ["1", b"1", None]


def test_unpicklable_is_refused() -> None:
    """A lambda cannot be copied: the caller keeps such sections as they are."""
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        compact.dump({"f": lambda: 1})


def test_gateway_config_names_and_numbers_are_shared(tmp_path: Path) -> None:
    """100 devices x the same 125 tag names: 125 name objects, one ``scale``, one interval."""
    lines = [
        '[agent]\nid = "gw"\nsite = "s"',
        f'state_dir = "{tmp_path}"',
        '[mqtt]\nhost = "127.0.0.1"',
    ]
    for d in range(100):
        lines += [f'[devices.d{d}]\nprotocol = "modbus_tcp"\nendpoint = "127.0.0.1:{1502 + d}"']
        lines += ['unit_id = 1\naddressing = "zero"\npublish = "every"']
        lines += [f'[devices.d{d}.tags.r{r}]\ntable = "holding"\naddress = {r}' for r in range(125)]
    path = tmp_path / "gw.toml"
    path.write_text("\n".join(lines) + "\n")
    cfg = load_config_compact(path)
    devices = [d for d in cfg.devices.values() if isinstance(d, ModbusDeviceConfig)]
    tags = [t for dev in devices for t in dev.tags]
    assert len(tags) == 12_500
    assert len({id(t.name) for t in tags}) == 125
    assert len({id(t.scale) for t in tags}) == 1
    assert len({id(t.interval_ms) for t in tags}) == 1
    # Each publish key's tag name is the tag's own name object (one pickle, not per section).
    key_names = {id(tag) for (device, tag) in cfg.publish if device == "d7"}
    assert key_names == {id(t.name) for t in devices[7].tags}
