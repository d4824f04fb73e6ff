"""The test harness's own logic (pure parts only)."""

from __future__ import annotations

from tests.plugins.broker import Received, first_deliveries


def rx(topic: str, payload: bytes, *, dup: bool = False) -> Received:
    return Received(topic, payload, retain=False, qos=1, at=0.0, dup=dup)


def test_first_deliveries_drops_redeliveries_of_what_was_received() -> None:
    a, b, death = rx("t/a", b"1"), rx("t/a", b"2"), rx("t/death", b"0")
    # After a broker restart: b (PUBACK lost) and the death come again, flagged DUP.
    stream = [a, b, death, rx("t/a", b"2", dup=True), rx("t/death", b"0", dup=True)]
    assert first_deliveries(stream) == [a, b, death]


def test_first_deliveries_keeps_a_first_copy_and_equal_new_messages() -> None:
    # A DUP-flagged message never seen before is the first copy that arrived.
    first = rx("t/a", b"1", dup=True)
    # Equal topic and payload without DUP is a new publish, not a redelivery.
    again = rx("t/a", b"1")
    assert first_deliveries([first, again]) == [first, again]
