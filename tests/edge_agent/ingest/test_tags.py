"""The tag state: latest reading per tag, comms per device, bounded listing."""

from __future__ import annotations

from edge_agent.ingest.tags import TagState
from edge_agent.model import CommsEvent, CommsState, Quality, Reading


def test_the_newest_reading_of_each_tag_wins() -> None:
    """A later batch replaces the readings of the tags it carries, keeps the others."""
    tags = TagState(["a"])
    tags.update("a", [Reading("a", "x", 1, 1.0, 1.0), Reading("a", "y", 2, 1.0, 1.0)])
    tags.update("a", [Reading("a", "x", 3, 2.0, 2.0)])
    assert {t: r.value for t, r in tags.latest["a"].items()} == {"x": 3, "y": 2}
    assert tags.tag_count() == 2


def test_a_reload_forgets_removed_devices_and_adds_new_ones_as_unknown() -> None:
    """Comms of kept devices survive a reload; new ones are unknown until they report."""
    tags = TagState(["a", "b"])
    tags.set_comms(CommsEvent(device="a", state=CommsState.UP, ts=1.0, mono=1.0))
    tags.update("b", [Reading("b", "x", 1, 1.0, 1.0)])
    tags.keep_devices(["a", "c"])
    assert tags.comms == {"a": CommsState.UP, "c": CommsState.UNKNOWN}
    assert "b" not in tags.latest


def test_the_listing_is_bounded_with_tags_not_good_first() -> None:
    """Over the limit: bad tags of every device first, then good ones in device order."""
    tags = TagState(["a", "b"])
    tags.update("a", [Reading("a", f"g{i}", i, 1.0, 1.0) for i in range(3)])
    tags.update("b", [Reading("b", "bad", None, 1.0, 1.0, Quality.BAD, "timeout")])
    assert tags.listed(["a", "b"], 10) is None
    listed = tags.listed(["a", "b"], 2)
    assert listed is not None
    assert [t for t, _ in listed["b"]] == ["bad"]
    assert [t for t, _ in listed["a"]] == ["g0"]
