"""Reconnect policy: a 5 s outage of a real Modbus TCP server costs at most 2 polls more.

The bundled simulator serves over a real socket; its server is stopped (every
connection closed, new ones refused) for 5 s and started again on the same port.
The link runs as in the agent: built by the driver registry from a parsed device
config and supervised by :class:`~edge_agent.links.LinkSupervisor` with the
device's own reconnect policy (the defaults: no ``reconnect_*`` key is set).
Unknown time, as the KPI engine counts it, runs from the bad readings of the loss
to the next good reading.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from drivers.base import Backoff
from drivers.reconnect import DEFAULT_MIN_S, default_max_s, link_backoff
from edge_agent.links import LinkSupervisor
from edge_agent.model import CommsState, Quality
from tests.drivers.modbus.conftest import config_issues, make_device
from tests.drivers.test_contract import RecordingSink

POLL_MS = 500
OUTAGE_S = 5.0

TAGS: dict[str, dict[str, Any]] = {
    "running": {"table": "coil", "address": 0},
    "good": {"table": "holding", "address": 10, "type": "uint32"},
}


@pytest.mark.integration
async def test_a_5s_outage_costs_at_most_two_poll_intervals_of_unknown_time(
    sim_factory: Any,
) -> None:
    host = await sim_factory("steady")
    (machine, *_) = host.machines
    dev = make_device(
        "m",
        protocol="modbus_tcp",
        endpoint=f"127.0.0.1:{host.modbus_port}",
        unit_id=machine.unit_id,
        addressing="zero",
        interval_ms=POLL_MS,
        timeout_ms=300,
        tags=TAGS,
    )
    sink = RecordingSink()
    links = LinkSupervisor(sink)
    await links.apply({"m": dev})
    try:
        await sink.wait_for(lambda: bool(sink.good("m", "good")), 10, "first good read")
        await host.modbus.stop()  # every connection closed, new ones refused
        await asyncio.sleep(OUTAGE_S)
        await host.modbus.start()  # same port
        back = time.time()
        await sink.wait_for(lambda: sink.states("m")[-1:] == [CommsState.UP], 10, "m up")
    finally:
        await links.stop()
    assert sink.states("m") == [CommsState.UP, CommsState.DOWN, CommsState.UP]
    lost = min(r.ts for r in sink.readings if r.quality is Quality.BAD)
    seen = min(r.ts for r in sink.readings if r.quality is Quality.GOOD and r.ts > lost)
    unknown = seen - lost
    print(f"unknown_s={unknown:.3f} after_restart_s={seen - back:.3f}")  # shown with -s
    # The loss is seen at the next poll (plus a timeout): the lower bound only shows that
    # the outage was seen; the upper one is the point.
    assert OUTAGE_S / 2 <= unknown <= OUTAGE_S + 2 * POLL_MS / 1000
    assert seen - back <= 2 * POLL_MS / 1000


def test_reconnect_keys_are_parsed_validated_and_default_from_the_poll_interval() -> None:
    base = {
        "protocol": "modbus_tcp",
        "endpoint": "127.0.0.1:1502",
        "unit_id": 1,
        "addressing": "zero",
        "tags": TAGS,
    }
    dev = make_device("m", **base)
    assert (dev.reconnect_min_s, dev.reconnect_max_s) == (DEFAULT_MIN_S, 1.0)  # 1 s polls
    fast = make_device("f", **base, interval_ms=100)
    assert fast.reconnect_max_s == 0.5
    slow = make_device("s", **base, interval_ms=120_000)
    assert slow.reconnect_max_s == 30.0 == default_max_s(120_000)
    set_ = make_device("k", **base, reconnect_min_s=0.5, reconnect_max_s=4)
    assert (set_.reconnect_min_s, set_.reconnect_max_s) == (0.5, 4.0)
    assert any(
        "reconnect_max_s: must be >= reconnect_min_s (2)" in i
        for i in config_issues({**base, "reconnect_min_s": 2, "reconnect_max_s": 1})
    )
    assert any("reconnect_min_s" in i for i in config_issues({**base, "reconnect_min_s": 0}))
    assert any("reconnect_max_s" in i for i in config_issues({**base, "reconnect_max_s": "5"}))
    # A link with several devices: the smallest values win.
    backoff = link_backoff([set_, slow])
    assert (backoff.initial_s, backoff.max_s) == (0.2, 4.0)
    assert isinstance(backoff, Backoff)
