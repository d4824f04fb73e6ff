"""Integration tests of browsing, TOML emission, probing and the browse/trust CLI commands."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import tomli

from drivers.opcua import probe_devices
from drivers.opcua.browse import browse, close_browse, open_for_browse, render_tree, toml_block
from drivers.opcua.config import OpcuaDevice, OpcuaTag, parse_device
from drivers.opcua.nodes import parse_node_id
from edge_agent import cli
from edge_agent.configkit import Issues, Table
from tests.drivers.opcua.server_kit import NS_URI, SimServer, free_port, start_server

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sim() -> AsyncIterator[SimServer]:
    server = await start_server(free_port(), filler_namespaces=1)
    yield server
    await server.stop()


async def test_browse_lists_variables_with_types_values_units(sim: SimServer) -> None:
    """The tree shows nsu= NodeIds, data types, current values and engineering units."""
    client = await open_for_browse(OpcuaDevice(name="b", endpoint=sim.endpoint, tags=()))
    try:
        entries = await browse(client, path="Objects", depth=3)
    finally:
        await close_browse(client, 2.0)
    by_path = {e.path: e for e in entries}
    good = by_path["Objects/M1/GoodCount"]
    assert (good.stable_id, good.data_type, good.value) == (
        f"nsu={NS_URI};s=M1.GoodCount",
        "UInt32",
        0,
    )
    assert good.node_id == f"ns={sim.ns};s=M1.GoodCount"
    assert by_path["Objects/M1/Temperature"].metadata["unit"] == "°C"
    assert by_path["Objects/M1/Temperature/EngineeringUnits"].depth == 3
    assert not any(p.startswith("Objects/Server") for p in by_path)
    tree = render_tree(entries)
    assert f"  GoodCount  [Variable] nsu={NS_URI};s=M1.GoodCount  UInt32 = 0" in tree
    assert "Temperature  [Variable]" in tree
    assert "Double = 20.5 °C" in tree


async def test_toml_block_is_valid_device_config(sim: SimServer) -> None:
    """The emitted TOML parses with parse_device into the chosen tags with nsu= NodeIds."""
    client = await open_for_browse(OpcuaDevice(name="b", endpoint=sim.endpoint, tags=()))
    try:
        entries = await browse(client, path="Objects/M1", depth=1)
    finally:
        await close_browse(client, 2.0)
    text, missing = toml_block(
        entries,
        ["M1/GoodCount", "Running", f"ns={sim.ns};i=1001", "Nope"],
        device="line1",
        endpoint=sim.endpoint,
    )
    assert missing == ["Nope"]
    doc = tomli.loads(text)
    issues = Issues("pasted.toml")
    device = parse_device("line1", Table(doc["devices"]["line1"], "devices.line1", issues))
    assert issues.items == []
    assert device.tag_names == ("good_count", "running", "numeric")
    assert str(device.tags[2].node) == f"nsu={NS_URI};i=1001"


async def test_probe_reports_ok_values_and_bad_status(sim: SimServer) -> None:
    """probe_devices reads each tag once: ok with the value, or not ok with the reason."""
    tags = (
        OpcuaTag(name="product", node=parse_node_id(f"nsu={NS_URI};s=M1.Product")),
        OpcuaTag(name="ghost", node=parse_node_id(f"nsu={NS_URI};s=Ghost")),
    )
    dead = OpcuaDevice(
        name="dead", endpoint=f"opc.tcp://127.0.0.1:{free_port()}/", tags=tags[:1], timeout_ms=500
    )
    results = await probe_devices([OpcuaDevice(name="m1", endpoint=sim.endpoint, tags=tags), dead])
    by_key = {(r.device, r.tag): r for r in results}
    assert by_key[("m1", "product")].ok
    assert by_key[("m1", "product")].value == "widget"
    assert not by_key[("m1", "ghost")].ok
    assert "BadNodeIdUnknown" in by_key[("m1", "ghost")].reason
    assert not by_key[("dead", "product")].ok
    assert "opc.tcp://127.0.0.1" in by_key[("dead", "product")].reason


async def test_browse_cli_prints_tree_and_toml(
    sim: SimServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`edge-agent browse` prints the tree, and with --toml a block; unknown VAR exits 1."""
    rc = await asyncio.to_thread(
        cli.main, ["browse", sim.endpoint, "--path", "Objects/M1", "--depth", "1"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert f"GoodCount  [Variable] nsu={NS_URI};s=M1.GoodCount" in out
    args = ["browse", sim.endpoint, "--toml", "GoodCount", "--device", "press"]
    rc = await asyncio.to_thread(cli.main, args)
    out = capsys.readouterr().out
    assert rc == 0
    assert tomli.loads(out)["devices"]["press"]["tags"]["good_count"]["node"].startswith("nsu=")
    rc = await asyncio.to_thread(cli.main, ["browse", sim.endpoint, "--toml", "Nope"])
    assert rc == 1
    assert "no variable 'Nope'" in capsys.readouterr().err


async def test_trust_cli_without_certificate_fails(sim: SimServer, tmp_path: Path) -> None:
    """`edge-agent opcua trust` on a server without certificates exits 1 and trusts nothing."""
    rc = await asyncio.to_thread(
        cli.main,
        ["opcua", "trust", "--endpoint", sim.endpoint, "--state-dir", str(tmp_path), "--yes"],
    )
    assert rc == 1
    assert not (tmp_path / "opcua" / "trusted").exists()
