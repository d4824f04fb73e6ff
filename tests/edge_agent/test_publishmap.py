"""PublishMap: per-device storage, the same mapping as one entry per published tag."""

from __future__ import annotations

import pickle

import pytest

from edge_agent.publishmap import PublishMap
from edge_agent.telemetry import PublishMode, PublishPolicy

EVERY = PublishPolicy(mode=PublishMode.EVERY)
CHANGE = PublishPolicy(mode=PublishMode.CHANGE, deadband=0.5)
NONE = PublishPolicy(mode=PublishMode.NONE)


def _sample() -> PublishMap:
    m = PublishMap()
    m.add_device("a", EVERY, ["t1", "t2", "t3"], {"t2": CHANGE, "t3": NONE})
    m.add_device("b", None, ["x", "y"], {"y": EVERY})
    m.add_device("c", NONE, ["z"], {})
    m.add_device("d", CHANGE, ["w"], {"w": CHANGE})  # an override equal to the default
    return m


EXPECTED = {("a", "t1"): EVERY, ("a", "t2"): CHANGE, ("b", "y"): EVERY, ("d", "w"): CHANGE}


def test_same_keys_values_order_and_equality_as_a_dict() -> None:
    """Tags that do not publish are absent; config order is kept; == works both ways."""
    m = _sample()
    assert list(m.items()) == list(EXPECTED.items())
    assert list(m) == list(EXPECTED)
    assert list(m.values()) == list(EXPECTED.values())
    assert len(m) == 4
    assert m == EXPECTED
    assert dict(EXPECTED) == m  # the dict on the left: the reflected ==
    assert m != {**EXPECTED, ("c", "z"): EVERY}
    assert bool(PublishMap()) is False
    assert bool(m) is True


def test_lookups_and_missing_keys() -> None:
    """Lookups answer like the dict: a tag that does not publish or does not exist is missing."""
    m = _sample()
    assert m[("a", "t2")] is CHANGE
    assert ("a", "t1") in m
    for missing in [("a", "t3"), ("a", "nope"), ("b", "x"), ("c", "z"), ("zz", "t1")]:
        assert missing not in m
        with pytest.raises(KeyError):
            m[missing]
    assert m.get(("b", "x")) is None
    assert m.devices["d"].overrides == {}  # equal to the default: not stored


def test_pickle_round_trip_equals() -> None:
    """The compact configuration copy pickles it."""
    m = _sample()
    copy = pickle.loads(pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301
    assert copy == m
    assert list(copy.items()) == list(m.items())
    assert "PublishMap({('a', 't1')" in repr(copy)
