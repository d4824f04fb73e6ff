"""Report by exception done right: publish responses confirm flat values; silence makes them stale.

The link runs under :func:`drivers.base.run_link` against the bundled simulator's
OPC-UA server with a manual clock (sim time moves only on ``advance``), playing the
``flat`` scenario, whose server stops publishing at sim 150 s and resumes at 250 s.
The subscription: publishing interval 100 ms, ``watchdog_s = 3`` -> keepalive count
10, a keepalive every 1.0 s, keepalive bound 2.0 s, session rebuilt after 3 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.base import Backoff, ConfirmedBy, run_link
from drivers.opcua.config import Mode, OpcuaDevice, OpcuaTag
from drivers.opcua.link import OpcuaLink, keepalive_bound_s
from drivers.opcua.nodes import parse_node_id
from edge_agent.model import CommsState, Confirmation, Quality
from simulators import NAMESPACE_URI
from tests.drivers.opcua.server_kit import Collector

pytestmark = pytest.mark.integration

TAGS = ("running", "fault", "good", "total")
NODES = {"running": "Running", "fault": "FaultCode", "good": "GoodCount", "total": "TotalCount"}
KEEPALIVE_S = 1.0
BOUND_S = 2.0


def device(endpoint: str, mode: Mode = Mode.SUBSCRIBE) -> OpcuaDevice:
    return OpcuaDevice(
        name="m1",
        endpoint=endpoint,
        tags=tuple(
            OpcuaTag(name=t, node=parse_node_id(f"nsu={NAMESPACE_URI};s=M1.{NODES[t]}"))
            for t in TAGS
        ),
        mode=mode,
        interval_ms=100,
        timeout_ms=1000,
        watchdog_s=3.0,
    )


@contextlib.asynccontextmanager
async def running_link(link: OpcuaLink, sink: Collector) -> AsyncIterator[None]:
    task = asyncio.create_task(
        run_link(link, sink, tags_by_device={"m1": TAGS}, backoff=Backoff(0.1, 0.3))
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_keepalive_bound_is_the_period_plus_a_margin() -> None:
    """1.5 x the keepalive period, at least the period plus one second."""
    assert keepalive_bound_s(10.0) == 15.0
    assert keepalive_bound_s(1.0) == BOUND_S
    assert keepalive_bound_s(0.3) == pytest.approx(1.3)


async def test_flat_values_are_confirmed_by_keepalives_not_re_read(sim_factory: Any) -> None:
    """Nothing changes: no new readings, a confirmation per keepalive, diagnostics say so."""
    sim = await sim_factory("flat", modbus=False, opcua=True)
    link = OpcuaLink([device(sim.opcua_endpoint)])
    sink = Collector()
    loop = asyncio.get_running_loop()
    async with running_link(link, sink):
        await sink.wait_for(lambda s: {r.tag for r in s.readings} == set(TAGS))
        first = len(sink.readings)
        start = loop.time()
        await sink.wait_for(lambda s: len(s.confirmations) >= 4, timeout=10)
        elapsed = loop.time() - start
        assert len(sink.readings) == first  # flat: confirmations are not readings
        diag = link.diagnostics()["m1"].as_dict()
        assert diag["confirmed_by"] == "keepalive"
        assert diag["keepalives"] >= 3
        assert diag["last_change_ts"] < diag["last_confirmed_ts"] <= diag["confirmed_until_ts"]
        assert diag["confirmed_until_ts"] - diag["last_confirmed_ts"] == pytest.approx(BOUND_S)
        # A part at sim 80 s: the counters' change comes as readings, then its confirmation.
        await sim.advance(80.0)
        await sink.wait_for(lambda s: s.values("total") == [0, 1])
        await sink.wait_for(
            lambda s: (
                s.order[-1][0] == "confirmation" and s.order[-1][1].mono > s.readings[-1].mono - 1.0
            )
        )
    confirmations: list[Confirmation] = sink.confirmations
    assert all(c.device == "m1" for c in confirmations)
    monos = [c.mono for c in confirmations]
    assert monos == sorted(monos)
    # The first confirmation stands for the initial values; keepalives follow about 1 s apart.
    gaps = [b - a for a, b in itertools.pairwise(monos[1:-1])]
    assert all(0.5 * KEEPALIVE_S < g < 1.5 * KEEPALIVE_S for g in gaps), gaps
    assert elapsed < 4 * KEEPALIVE_S + 1.0
    # A confirmation never precedes the readings of the response it stands for.
    kinds = [kind for kind, _ in sink.order if kind != "comms"]
    assert kinds[0] == "readings"


async def test_silent_server_makes_values_stale_within_the_bound_then_restores_them(
    sim_factory: Any,
) -> None:
    """No publish response within the keepalive bound: stale; the next response restores."""
    sim = await sim_factory("flat", modbus=False, opcua=True)
    link = OpcuaLink([device(sim.opcua_endpoint)])
    sink = Collector()
    loop = asyncio.get_running_loop()
    async with running_link(link, sink):
        await sink.wait_for(lambda s: {r.tag for r in s.readings} == set(TAGS))
        await sink.wait_for(lambda s: len(s.confirmations) >= 2)
        before = {r.tag: r.value for r in sink.readings}
        last_confirmed = sink.confirmations[-1].mono
        await sim.advance(150.0)  # publishing stalls (a part at 80 s went out just before)
        stalled_at = loop.time()
        await sink.wait_for(lambda s: any(r.quality is Quality.STALE for r in s.readings), 5)
        stale_after = loop.time() - stalled_at
        stale = [r for r in sink.readings if r.quality is Quality.STALE]
        assert sorted(r.tag for r in stale) == sorted(TAGS)
        assert all(r.value is None and r.reason.startswith("not confirmed") for r in stale)
        assert stale[0].mono - last_confirmed == pytest.approx(BOUND_S, abs=0.2 + KEEPALIVE_S)
        diag = link.diagnostics()["m1"]
        assert diag.confirmed_by is ConfirmedBy.LAPSED
        assert diag.errors.get("keepalive") == 1
        assert not sink.events or sink.events[-1].state is CommsState.UP  # not yet rebuilt
        mark = len(sink.readings)
        await sim.advance(10.0)  # 160 s: still stalled, a part is made meanwhile
        await sim.advance(100.0)  # 260 s: publishing resumes
        await sink.wait_for(
            lambda s: {r.tag for r in s.readings[mark:] if r.quality is Quality.GOOD} == set(TAGS)
        )
        assert link.diagnostics()["m1"].confirmed_by is not ConfirmedBy.LAPSED
    # Closed: nothing confirms the values any more.
    assert link.diagnostics()["m1"].confirmed_by is ConfirmedBy.LAPSED
    restored = {r.tag: r.value for r in sink.readings[mark:] if r.quality is Quality.GOOD}
    assert restored["running"] is True
    assert restored["fault"] == before["fault"] == 0
    assert restored["total"] == sim.machine("M1").snapshot().total
    assert stale_after < BOUND_S + 0.5
    assert [e.state for e in sink.events] == [CommsState.UP]  # resumed before the watchdog


async def test_poll_mode_confirms_by_reading(sim_factory: Any) -> None:
    """Poll mode: every tick is a reading of every tag; no confirmations, confirmed_by poll."""
    sim = await sim_factory("flat", modbus=False, opcua=True)
    link = OpcuaLink([device(sim.opcua_endpoint, Mode.POLL)])
    sink = Collector()
    async with running_link(link, sink):
        await sink.wait_for(lambda s: len(s.values("running")) >= 5)
    assert sink.confirmations == []
    diag = link.diagnostics()["m1"].as_dict()
    assert diag["confirmed_by"] == "poll"
    assert diag["last_confirmed_ts"] == diag["last_good_ts"] is not None
