"""status.json as the runtime writes it: encoded device by device, listing bounded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import load_config
from edge_agent.model import CommsEvent, CommsState, Quality, Reading
from edge_agent.runtime import Runtime
from edge_agent.status_view import render

DEVICE = """
[devices.{name}]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:1"
unit_id = 1
addressing = "zero"

[devices.{name}.tags.running]
table = "coil"
address = 0
type = "bool"
"""


@pytest.fixture
async def runtime(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    """A runtime (buffer open, nothing started) with devices a and b."""
    tags_max = getattr(request, "param", 1000)
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[agent]\nid = "gw"\nsite = "lab"\nstate_dir = "{tmp_path / "state"}"\n'
        f"status_tags_max = {tags_max}\n" + DEVICE.format(name="a") + DEVICE.format(name="b")
    )
    rt = Runtime(load_config(path), install_signals=False)
    (tmp_path / "state").mkdir()
    await rt.buffer.open()
    yield rt
    await rt.buffer.close()


def document(rt: Runtime) -> dict[str, Any]:
    """What the status loop writes, parsed."""
    doc: dict[str, Any] = json.loads("".join(rt.status.parts()))
    return doc


async def test_status_json_is_the_snapshot_with_each_device_encoded_alone(rt: Runtime) -> None:
    """The pieces make one JSON document: the snapshot plus every device's entry."""
    rt.tags.latest["a"] = {"running": Reading("a", "running", True, 1.5, 2.5)}
    rt.tags.latest["b"] = {
        "running": Reading("b", "running", None, 1.5, 2.5, Quality.BAD, "timeout")
    }
    await rt.dispatcher.handle(CommsEvent(device="a", state=CommsState.UP, ts=1.0, mono=1.0))
    doc = document(rt)
    head = json.loads(json.dumps(rt.status.snapshot(), default=str))
    assert set(doc) == {*head, "devices"}
    assert doc["agent"]["id"] == "gw"
    assert doc["devices"]["b"]["tags"]["running"] == {
        "value": None,
        "quality": "bad",
        "ts": 1.5,
        "reason": "timeout",
    }
    assert (doc["devices"]["a"]["comms"], doc["devices"]["b"]["comms"]) == ("up", "unknown")


@pytest.mark.parametrize("runtime", [3], indirect=True)
async def test_status_lists_at_most_status_tags_max_tags_bad_ones_first(rt: Runtime) -> None:
    """Beyond [agent] status_tags_max, the tags not good are listed first, then good ones.

    Every device's tags are still counted, and the status screen says how many are left out.
    """
    rt.tags.latest["a"] = {f"g{i}": Reading("a", f"g{i}", i, 1.5, 2.5) for i in range(4)}
    rt.tags.latest["b"] = {
        "ok": Reading("b", "ok", 1, 1.5, 2.5),
        "lost": Reading("b", "lost", None, 1.5, 2.5, Quality.BAD, "timeout"),
    }
    doc = document(rt)
    assert doc["tags_max"] == 3
    assert list(doc["devices"]["b"]["tags"]) == ["lost"]
    assert list(doc["devices"]["a"]["tags"]) == ["g0", "g1"]
    assert (doc["devices"]["a"]["tag_count"], doc["devices"]["b"]["tag_count"]) == (4, 2)
    text = render(doc, now=doc["written_at"])
    assert "3 more tags not listed" in text
    assert "at most 3 tags" in text
    # Within the limit every tag is listed and nothing is said about it.
    rt.tags.latest["a"] = {"g0": rt.tags.latest["a"]["g0"]}
    doc = document(rt)
    assert sum(len(d["tags"]) for d in doc["devices"].values()) == 3
    assert "not listed" not in render(doc, now=doc["written_at"])


@pytest.fixture
def rt(runtime: Runtime) -> Runtime:
    return runtime
