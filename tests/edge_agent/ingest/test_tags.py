"""The tag state: latest reading per tag, comms per device, bounded listing."""

from __future__ import annotations

from typing import Any

from edge_agent.columns import Column, ColumnPoll
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


def _poll(device: str, tags: tuple[str, ...], values: list[int], ts: float) -> ColumnPoll:
    return ColumnPoll(device, [Column(tags, values, ts, ts)])


def test_column_polls_and_lists_apply_in_arrival_order() -> None:
    """Whatever mix of batches: the view is the newest reading of each tag."""
    block = ("x", "y")
    tags = TagState(["a"])
    tags.update("a", _poll("a", block, [1, 2], 1.0))
    tags.update("a", [Reading("a", "y", None, 2.0, 2.0, Quality.BAD, "timeout")])
    tags.update("a", _poll("a", ("z",), [5], 3.0))
    assert tags.latest["a"] == {
        "x": Reading("a", "x", 1, 1.0, 1.0),
        "y": Reading("a", "y", None, 2.0, 2.0, Quality.BAD, "timeout"),
        "z": Reading("a", "z", 5, 3.0, 3.0),
    }
    tags.update("a", _poll("a", block, [3, 4], 4.0))
    tags.update("a", [Reading("a", "x", 9, 5.0, 5.0)])
    assert {t: r.value for t, r in tags.latest["a"].items()} == {"x": 9, "y": 4, "z": 5}
    assert tags.tag_count() == 3


class _Unreadable(list[int]):
    """Values that fail the test when they are read."""

    def __iter__(self) -> Any:
        raise AssertionError("values were read")

    def __getitem__(self, index: Any) -> Any:
        raise AssertionError("a value was read")


def test_a_poll_replaced_by_a_later_poll_of_its_block_never_builds_readings() -> None:
    """Only the newest poll of a block is turned into readings when the view is read."""
    block = ("x", "y")
    tags = TagState(["a"])
    tags.update("a", ColumnPoll("a", [Column(block, _Unreadable([1, 2]), 1.0, 1.0)]))
    tags.update("a", _poll("a", block, [3, 4], 2.0))
    assert {t: r.value for t, r in tags.latest["a"].items()} == {"x": 3, "y": 4}


def test_a_listing_builds_only_the_readings_it_lists() -> None:
    """Bad tags first, then good ones up to the limit; unlisted columns are never read."""
    tags = TagState(["a", "b"])
    tags.update("a", _poll("a", ("x", "y"), [1, 2], 1.0))
    tags.update("a", [Reading("a", "x", None, 2.0, 2.0, Quality.BAD, "timeout")])
    tags.update("b", ColumnPoll("b", [Column(("z",), _Unreadable([3]), 1.0, 1.0)]))
    assert tags.tag_count() == 3
    listed = tags.listed(["a", "b"], 2)
    assert listed == {
        "a": [
            ("x", Reading("a", "x", None, 2.0, 2.0, Quality.BAD, "timeout")),
            ("y", Reading("a", "y", 2, 1.0, 1.0)),
        ],
        "b": [],
    }


def test_views_can_be_replaced_and_removed() -> None:
    """Setting a device's view replaces it; deleting forgets the device."""
    tags = TagState(["a"])
    tags.update("a", _poll("a", ("x",), [1], 1.0))
    tags.latest["a"] = {"y": Reading("a", "y", 1, 1.0, 1.0)}
    assert list(tags.latest["a"]) == ["y"]
    tags.update("b", _poll("b", ("x",), [1], 1.0))
    assert "b" in tags.latest
    assert sorted(tags.latest) == ["a", "b"]
    del tags.latest["b"]
    assert "b" not in tags.latest
    assert len(tags.latest) == 1
    assert tags.latest.get("b") is None
