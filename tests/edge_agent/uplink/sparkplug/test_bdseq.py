"""bdSeq: persisted before each CONNECT, advanced only by accepted connections, wraps at 256."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.uplink.sparkplug.bdseq import BdSeq


def test_first_start_is_zero_and_an_accepted_connect_moves_on(tmp_path: Path) -> None:
    """0 on a fresh install; the next CONNECT after an accepted one uses 1, stored first."""
    path = tmp_path / "b.json"
    b = BdSeq(path)
    assert b.for_connect() == 0
    assert json.loads(path.read_text()) == {"bdseq": 0}
    b.accepted()
    assert b.for_connect() == 1
    assert json.loads(path.read_text()) == {"bdseq": 1}
    assert b.current == 1


def test_refused_attempts_reuse_the_value_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CONNECT that was never accepted does not spend its bdSeq (no file write per retry)."""
    b = BdSeq(tmp_path / "b.json")
    assert b.for_connect() == 0
    writes: list[int] = []
    monkeypatch.setattr(b, "_store", writes.append)
    assert [b.for_connect() for _ in range(5)] == [0] * 5
    assert writes == []


def test_restart_continues_after_the_stored_value(tmp_path: Path) -> None:
    """After a restart the stored value (maybe used just before a crash) is not reused."""
    path = tmp_path / "b.json"
    b = BdSeq(path)
    b.for_connect()
    b.accepted()
    assert b.for_connect() == 1
    assert BdSeq(path).for_connect() == 2


def test_wraps_from_255_to_0(tmp_path: Path) -> None:
    """255 is followed by 0."""
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"bdseq": 254}))
    b = BdSeq(path)
    assert b.for_connect() == 255
    b.accepted()
    assert b.for_connect() == 0


@pytest.mark.parametrize("text", ["not json", '{"bdseq": 300}', '{"bdseq": true}', "[]"])
def test_an_unreadable_file_starts_at_zero(tmp_path: Path, text: str) -> None:
    """A corrupt or out-of-range file starts over at 0 (logged), it does not crash the uplink."""
    path = tmp_path / "b.json"
    path.write_text(text)
    assert BdSeq(path).for_connect() == 0
