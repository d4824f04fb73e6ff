"""Integration tests of OpcuaLink against an in-test asyncua server on loopback.

One server is shared by the module (the tests only read, or write tags no other
test asserts on); each test opens and closes its own session.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from asyncua import ua

from drivers.opcua.config import DeadbandType, Mode, OpcuaDevice, OpcuaTag
from drivers.opcua.link import OpcuaLink
from drivers.opcua.nodes import parse_browse_path, parse_node_id
from edge_agent.errors import DeviceUnavailable
from edge_agent.model import Quality, Reading
from tests.drivers.opcua.server_kit import NS_URI, SimServer, free_port, start_server

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sim() -> AsyncIterator[SimServer]:
    server = await start_server(free_port(), filler_namespaces=2)
    yield server
    await server.stop()


def node(text: str) -> OpcuaTag:
    return OpcuaTag(name=text, node=parse_node_id(text))


def device(
    sim: SimServer, *tags: OpcuaTag, mode: Mode = Mode.SUBSCRIBE, interval_ms: int = 100
) -> OpcuaDevice:
    return OpcuaDevice(
        name="m1",
        endpoint=sim.endpoint,
        tags=tags,
        mode=mode,
        interval_ms=interval_ms,
        watchdog_s=5,
    )


async def collect(link: OpcuaLink, want: int, timeout: float = 5.0) -> list[Reading]:
    """Poll until at least ``want`` readings arrived (bounded in time)."""
    out: list[Reading] = []
    async with asyncio.timeout(timeout):
        while len(out) < want:
            result = await link.poll()
            for batch in result.batches:
                out.extend(batch)
    return out


async def test_every_node_id_form_resolves_and_reads(sim: SimServer) -> None:
    """ns=/nsu= string, numeric, GUID, opaque and browse-path addresses all deliver values."""
    tags = (
        OpcuaTag(name="by_index", node=parse_node_id(f"ns={sim.ns};s=M1.Running")),
        OpcuaTag(name="numeric", node=parse_node_id(f"nsu={NS_URI};i=1001")),
        OpcuaTag(
            name="guid", node=parse_node_id(f"nsu={NS_URI};g=72962b91-fa75-4ae6-8d28-b404dc7daf63")
        ),
        OpcuaTag(name="opaque", node=parse_node_id(f"nsu={NS_URI};b=AQJvcGFxdWU=")),
        OpcuaTag(name="path", browse_path=parse_browse_path(f"Objects/{sim.ns}:M1/Product")),
        OpcuaTag(name="when", node=parse_node_id(f"nsu={NS_URI};s=M1.LastStop")),
        OpcuaTag(name="array", node=parse_node_id(f"nsu={NS_URI};s=M1.Temps")),
    )
    link = OpcuaLink([device(sim, *tags)])
    await link.connect()
    try:
        readings = {r.tag: r for r in await collect(link, len(tags))}
    finally:
        await link.close()
    assert {t: r.value for t, r in readings.items()} == {
        "by_index": False,
        "numeric": -5,
        "guid": 7,
        "opaque": "bytes",
        "path": "widget",
        "when": "2026-01-02T03:04:05+00:00",
        "array": [1.5, 2.5, 3.5],
    }
    assert all(r.quality is Quality.GOOD and r.source_ts is not None for r in readings.values())
    # nsu= was resolved against the live NamespaceArray (index 4 here, not the usual 2).
    assert link.tag_metadata()["m1"]["numeric"]["node_id"] == f"ns={sim.ns};i=1001"
    assert sim.ns == 4


async def test_notifications_of_one_publish_response_share_their_arrival_time(
    sim: SimServer,
) -> None:
    """Notifications of one publish response carry one arrival time (ts, mono).

    The initial values of a subscription come in one response; the buffer stores a
    batch with one time as one frame, not one row per value.
    """
    names = ("Running", "GoodCount", "Product", "Temps")
    tags = tuple(OpcuaTag(name=n, node=parse_node_id(f"nsu={NS_URI};s=M1.{n}")) for n in names)
    link = OpcuaLink([device(sim, *tags)])
    await link.connect()
    try:
        readings = await collect(link, len(tags))
    finally:
        await link.close()
    stamps = {(r.ts, r.mono) for r in readings}
    assert len(readings) >= len(tags)
    # Before: every notification was stamped on its own (as many stamps as readings).
    assert len(stamps) < len(readings)


async def test_subscription_keeps_order_and_source_timestamps(sim: SimServer) -> None:
    """A burst of changes arrives complete and in order, each with the server's SourceTimestamp."""
    tag = OpcuaTag(name="good", node=parse_node_id(f"nsu={NS_URI};s=M1.GoodCount"), queue_size=100)
    link = OpcuaLink([device(sim, tag)])
    await link.connect()
    try:
        first = await collect(link, 1)
        start = first[0].value
        assert isinstance(start, int)
        for k in range(1, 31):
            await sim.write("good", start + k, ua.VariantType.UInt32)
        readings = first + await collect(link, 30)
    finally:
        await link.close()
    values = [r.value for r in readings]
    assert values == list(range(start, start + 31))
    stamps = [r.source_ts for r in readings[1:]]
    assert all(s is not None for s in stamps)
    assert stamps == sorted(stamps)  # type: ignore[type-var]


async def test_unresolvable_tags_are_bad_and_others_keep_running(sim: SimServer) -> None:
    """An unknown node, namespace or path gives a bad reading with the reason; others flow."""
    tags = (
        OpcuaTag(name="ok", node=parse_node_id(f"nsu={NS_URI};s=M1.Product")),
        OpcuaTag(name="unknown", node=parse_node_id(f"nsu={NS_URI};s=Nope")),
        OpcuaTag(name="no_ns", node=parse_node_id("nsu=urn:missing;s=X")),
        OpcuaTag(name="no_path", browse_path=parse_browse_path("Objects/M1/Nope")),
    )
    for mode in (Mode.SUBSCRIBE, Mode.POLL):
        link = OpcuaLink([device(sim, *tags, mode=mode)])
        await link.connect()
        try:
            readings = {r.tag: r for r in await collect(link, 4)}
        finally:
            await link.close()
        assert readings["ok"].value == "widget"
        assert readings["unknown"].quality is Quality.BAD
        assert "BadNodeIdUnknown" in readings["unknown"].reason
        assert "urn:missing" in readings["no_ns"].reason
        assert "no child 'Nope'" in readings["no_path"].reason


async def test_poll_mode_reads_all_tags_in_one_request_per_tick(sim: SimServer) -> None:
    """Poll mode issues one Read per grid tick for all tags, and ticks stay on the grid."""
    tags = (
        node(f"nsu={NS_URI};s=M1.Product"),
        node(f"nsu={NS_URI};i=1001"),
        node(f"nsu={NS_URI};s=M1.Temps"),
    )
    link = OpcuaLink([device(sim, *tags, mode=Mode.POLL, interval_ms=100)])
    await link.connect()
    monos: list[float] = []
    try:
        for _ in range(5):
            result = await link.poll()
            assert len(result.batches) == 1
            assert len(result.batches[0]) == 3
            monos.append(result.batches[0][0].mono)
    finally:
        await link.close()
    assert link.diagnostics()["m1"].requests == 5
    gaps = [b - a for a, b in itertools.pairwise(monos)]
    assert all(0.05 < g < 0.2 for g in gaps), gaps
    assert 0.35 < monos[-1] - monos[0] < 0.5


async def test_status_codes_map_to_quality(sim: SimServer) -> None:
    """Bad and Uncertain statuses arrive as bad/stale readings with the status name."""
    tag = OpcuaTag(name="running", node=parse_node_id(f"nsu={NS_URI};s=M1.Running"), queue_size=10)
    link = OpcuaLink([device(sim, tag)])
    await link.connect()
    try:
        await collect(link, 1)
        await sim.write_status(
            "running", ua.StatusCodes.BadNoCommunication, False, ua.VariantType.Boolean
        )
        await sim.write_status(
            "running", ua.StatusCodes.UncertainLastUsableValue, False, ua.VariantType.Boolean
        )
        await sim.write("running", True)
        readings = await collect(link, 3)
    finally:
        await link.close()
    assert [(r.quality, r.reason, r.value) for r in readings] == [
        (Quality.BAD, "BadNoCommunication", None),
        (Quality.STALE, "UncertainLastUsableValue", None),
        (Quality.GOOD, "", True),
    ]


async def test_absolute_deadband_filters_small_changes(sim: SimServer) -> None:
    """With an absolute deadband the server suppresses changes smaller than the band."""
    tag = OpcuaTag(
        name="temp",
        node=parse_node_id(f"nsu={NS_URI};s=M1.Temperature"),
        deadband=5.0,
        deadband_type=DeadbandType.ABSOLUTE,
        queue_size=10,
    )
    link = OpcuaLink([device(sim, tag)])
    await link.connect()
    try:
        first = (await collect(link, 1))[0].value
        assert isinstance(first, float)
        await sim.write("temp", first + 1.0, ua.VariantType.Double)
        await sim.write("temp", first + 10.0, ua.VariantType.Double)
        # Writes are delivered in order: an unfiltered +1.0 would arrive before +10.0.
        readings = await collect(link, 1)
    finally:
        await link.close()
    assert [r.value for r in readings] == [first + 10.0]


async def test_engineering_units_are_tag_metadata(sim: SimServer) -> None:
    """EUInformation and EURange of an AnalogItem-style variable appear in the tag metadata."""
    link = OpcuaLink(
        [
            device(
                sim, OpcuaTag(name="temp", browse_path=parse_browse_path("Objects/M1/Temperature"))
            )
        ]
    )
    await link.connect()
    await link.close()
    meta = link.tag_metadata()["m1"]["temp"]
    assert meta["unit"] == "°C"
    assert meta["unit_id"] == 4408652
    assert meta["eu_range"] == [0.0, 200.0]


async def test_connect_to_closed_port_is_device_unavailable() -> None:
    """A refused connection raises DeviceUnavailable naming the endpoint (run_link retries it)."""
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/x"
    link = OpcuaLink(
        [OpcuaDevice(name="m1", endpoint=endpoint, tags=(node("ns=2;s=A"),), timeout_ms=500)]
    )
    with pytest.raises(DeviceUnavailable, match=endpoint):
        await link.connect()
