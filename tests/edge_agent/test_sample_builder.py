"""SampleBuilder: a value is known while its source is confirmed alive (pure logic, no I/O).

A reading confirms its value when it arrives (every poll re-reads); a
:class:`~edge_agent.model.Confirmation` (one per publish response of an OPC-UA
subscription, data or keepalive) confirms every value its device reported
last. A value unconfirmed for longer than ``signal_max_age_s`` makes the
sample bad (unknown time).
"""

from __future__ import annotations

from edge_agent.configkit import Issues, Table
from edge_agent.machines import SampleBuilder, parse_machine
from edge_agent.model import Confirmation, Quality, Reading, Value

MAX_AGE_S = 30.0


def builder(**signals: str) -> SampleBuilder:
    issues = Issues("test.toml")
    raw = {
        "run": "ua.running",
        "fault": "ua.fault",
        "good": "ua.good",
        "total": "ua.total",
        "signal_max_age_s": MAX_AGE_S,
        "kpi": {"ideal_cycle_time_s": 2.0},
        **signals,
    }
    machine = parse_machine("m1", Table(raw, "machines.m1", issues))
    assert not issues.items, issues.items
    return SampleBuilder(machine)


def reading(tag: str, value: Value, mono: float, *, device: str = "ua") -> Reading:
    return Reading(device=device, tag=tag, value=value, ts=1000.0 + mono, mono=mono)


def first_values(b: SampleBuilder, mono: float = 0.0) -> None:
    assert b.update(
        [
            reading("running", True, mono),
            reading("fault", 0, mono),
            reading("good", 10, mono),
            reading("total", 11, mono),
        ]
    )


def test_flat_values_age_out_without_confirmation() -> None:
    """Before: a run bit that stays 1 longer than signal_max_age_s makes the sample bad."""
    b = builder()
    first_values(b)
    assert b.sample(t=1000.0, mono=0.0, synced=True).quality == "good"
    b.update([reading("total", 12, 40.0)])  # only the counter changed
    assert b.sample(t=1040.0, mono=40.0, synced=True).quality == "bad"


def test_a_confirmation_keeps_flat_values_known_and_makes_a_sample() -> None:
    """A publish response without changes confirms the values: a good sample at its time."""
    b = builder()
    first_values(b)
    b.sample(t=1000.0, mono=0.0, synced=True)
    for mono in (10.0, 20.0, 30.0, 40.0):  # keepalives every 10 s
        assert b.confirm(Confirmation(device="ua", ts=1000.0 + mono, mono=mono))
        s = b.sample(t=1000.0 + mono, mono=mono, synced=True)
        assert (s.quality, s.run, s.fault, s.good, s.total) == ("good", 1, 0, 10, 11)
    b.update([reading("total", 12, 65.0)])  # 25 s later a change; the run bit is 25 s old
    assert b.sample(t=1065.0, mono=65.0, synced=True).quality == "good"
    # Silence past signal_max_age_s since the last confirmation: unknown.
    b.update([reading("total", 13, 71.0)])
    assert b.sample(t=1071.0, mono=71.0, synced=True).quality == "bad"


def test_a_confirmation_after_its_changes_refreshes_without_a_sample() -> None:
    """The confirmation of a response that carried changes arrives after their sample.

    It is older than that sample, so it only refreshes the unchanged values' age: no second
    sample at (almost) the same instant with different values.
    """
    b = builder()
    first_values(b)
    b.sample(t=1000.0, mono=0.0, synced=True)
    b.update([reading("total", 12, 25.2)])
    b.sample(t=1025.2, mono=25.2, synced=True)
    assert not b.confirm(Confirmation(device="ua", ts=1025.0, mono=25.0))
    b.update([reading("total", 13, 54.0)])  # run bit: confirmed at 25.0, 29 s ago
    assert b.sample(t=1054.0, mono=54.0, synced=True).quality == "good"


def test_a_confirmation_never_makes_a_bad_value_good() -> None:
    """A stale or bad value stays unknown however often its device is confirmed."""
    b = builder()
    first_values(b)
    b.update(
        [
            Reading(
                device="ua",
                tag="running",
                value=None,
                ts=1001.0,
                mono=1.0,
                quality=Quality.STALE,
                reason="not confirmed",
            )
        ]
    )
    assert b.confirm(Confirmation(device="ua", ts=1002.0, mono=2.0))
    assert b.sample(t=1002.0, mono=2.0, synced=True).quality == "bad"


def test_confirmations_apply_to_their_device_only() -> None:
    """A machine on two devices: one device's keepalive does not vouch for the other's tags."""
    b = builder(good="plc.good", total="plc.total")
    first_values(b)  # ua.good and ua.total are not the machine's: ignored
    assert b.update(
        [reading("good", 10, 0.0, device="plc"), reading("total", 11, 0.0, device="plc")]
    )
    b.sample(t=1000.0, mono=0.0, synced=True)
    assert not b.confirm(Confirmation(device="other", ts=1035.0, mono=35.0))
    assert b.confirm(Confirmation(device="ua", ts=1035.0, mono=35.0))
    # ua.running and ua.fault are confirmed; plc.good and plc.total (polled) are 35 s old.
    assert b.sample(t=1035.0, mono=35.0, synced=True).quality == "bad"
    b.update([reading("good", 10, 36.0, device="plc"), reading("total", 11, 36.0, device="plc")])
    assert b.sample(t=1036.0, mono=36.0, synced=True).quality == "good"


def test_no_sample_from_a_confirmation_before_the_first_reading() -> None:
    """A device confirmed before any of its values arrived has nothing to confirm."""
    b = builder()
    assert not b.confirm(Confirmation(device="ua", ts=1000.0, mono=0.0))


def test_polled_values_are_confirmed_by_each_read() -> None:
    """Poll mode (Modbus, OPC-UA poll): every read is the confirmation; the rule is the same."""
    b = builder()
    for mono in (0.0, 10.0, 20.0, 30.0, 40.0):
        first_values(b, mono)
        assert b.sample(t=1000.0 + mono, mono=mono, synced=True).quality == "good"
    assert b.sample(t=1071.0, mono=71.0, synced=True).quality == "bad"
