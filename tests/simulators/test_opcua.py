"""The OPC-UA front end, read by the asyncua client: subscriptions, node ids, security, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulators import NAMESPACE_URI
from simulators.host import SimulatorHost
from simulators.opcua_server import OpcUaSecurity

pytestmark = pytest.mark.integration

SimFactory = Callable[..., Awaitable[SimulatorHost]]
CLIENT_URI = "urn:edge-agent:test-client"


class _Collector:
    """asyncua subscription handler that queues (node id string, value) pairs."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.queue.put_nowait((node.nodeid.to_string(), val))


async def _wait_for(q: asyncio.Queue[tuple[str, Any]], *expected: tuple[str, Any]) -> None:
    """Wait (bounded) until every expected (node, value) notification arrived, in any order."""
    missing = set(expected)

    async def loop() -> None:
        while missing:
            missing.discard(await q.get())

    await asyncio.wait_for(loop(), timeout=10)


async def test_subscription_follows_the_model(sim_factory: SimFactory) -> None:
    """A subscribed client sees the run bit drop and the fault code appear when a fault starts."""
    sim = await sim_factory("e2e", modbus=False, opcua=True)
    async with Client(sim.opcua_endpoint) as c:
        idx = await c.get_namespace_index(NAMESPACE_URI)
        names = ("Running", "FaultCode", "GoodCount")
        nodes = [c.get_node(f"ns={idx};s=M1.{n}") for n in names]
        handler = _Collector()
        sub = await c.create_subscription(50, handler)
        await sub.subscribe_data_change(nodes)
        await _wait_for(handler.queue, (f"ns={idx};s=M1.Running", True))
        await sim.advance(31.0)
        await _wait_for(
            handler.queue, (f"ns={idx};s=M1.FaultCode", 42), (f"ns={idx};s=M1.Running", False)
        )
        good = await nodes[2].read_data_value()
        assert good.Value.VariantType == ua.VariantType.UInt32
        assert good.Value.Value == sim.machine("M1").snapshot().good
        assert good.SourceTimestamp is not None
        assert good.SourceTimestamp.timestamp() == pytest.approx(sim.clock.wall_ts(31.0))


async def test_numeric_node_ids_and_types(sim_factory: SimFactory) -> None:
    """Numeric-id mirrors (i=1000*ordinal+k) carry the same values as the string ids."""
    sim = await sim_factory("demo", modbus=False, opcua=True)
    await sim.advance(60.0)
    async with Client(sim.opcua_endpoint) as c:
        idx = await c.get_namespace_index(NAMESPACE_URI)
        for ordinal, mid in enumerate(("M1", "M2", "M3"), start=1):
            by_name = await c.get_node(f"ns={idx};s={mid}.GoodCount").read_value()
            by_num = await c.get_node(f"ns={idx};i={1000 * ordinal + 3}").read_value()
            assert by_name == by_num == sim.machine(mid).snapshot().good
        temp = await c.get_node(f"ns={idx};s=M1.Temperature").read_data_value()
        assert temp.Value.VariantType == ua.VariantType.Double
        text = await c.get_node(f"ns={idx};s=M1.StatusText").read_value()
        assert text == "RUNNING"


async def test_outage_sets_bad_status(sim_factory: SimFactory) -> None:
    """During a machine's comms outage its variables read BadNoCommunication; others stay good."""
    sim = await sim_factory("demo", modbus=False, opcua=True)
    async with Client(sim.opcua_endpoint) as c:
        idx = await c.get_namespace_index(NAMESPACE_URI)
        sim.machine("M2").set_outage(True)
        await sim.advance(1.0)
        with pytest.raises(ua.UaStatusCodeError, match="BadNoCommunication"):
            await c.get_node(f"ns={idx};s=M2.GoodCount").read_value()
        assert await c.get_node(f"ns={idx};s=M1.Running").read_value() is True
        sim.machine("M2").set_outage(False)
        await sim.advance(1.0)
        assert await c.get_node(f"ns={idx};s=M2.Running").read_value() is True


async def _client_cert(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / "client-key.pem", directory / "client-cert.der"
    await setup_self_signed_certificate(
        key,
        cert,
        CLIENT_URI,
        "localhost",
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": "edge-agent test client"},
    )
    return cert, key


async def _secure_client(endpoint: str, cert: Path, key: Path) -> Client:
    c = Client(endpoint)
    c.application_uri = CLIENT_URI
    await c.set_security(
        SecurityPolicyBasic256Sha256,
        str(cert),
        str(key),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    return c


async def test_basic256sha256_trust_list(sim_factory: SimFactory, tmp_path: Path) -> None:
    """With a trust list a listed client cert connects SignAndEncrypt; others are refused."""
    trusted_cert, trusted_key = await _client_cert(tmp_path / "trusted-client")
    other_cert, other_key = await _client_cert(tmp_path / "other-client")
    trust_dir = tmp_path / "trust"
    trust_dir.mkdir()
    (trust_dir / "client.der").write_bytes(trusted_cert.read_bytes())
    state = tmp_path / "state"
    sim = await sim_factory(
        "steady",
        modbus=False,
        opcua=True,
        state_dir=state,
        opcua_security=OpcUaSecurity(modes="all", trust_dir=trust_dir),
    )
    assert (state / "server-cert.der").exists()
    assert (state / "server-key.pem").exists()
    c = await _secure_client(sim.opcua_endpoint, trusted_cert, trusted_key)
    async with c:
        idx = await c.get_namespace_index(NAMESPACE_URI)
        assert await c.get_node(f"ns={idx};s=M1.Running").read_value() is True
    bad = await _secure_client(sim.opcua_endpoint, other_cert, other_key)
    with pytest.raises(
        ua.UaStatusCodeError, match=r"BadCertificateUntrusted|BadSecurityChecksFailed"
    ):
        await bad.connect()
    await bad.disconnect()


async def test_username_password(sim_factory: SimFactory) -> None:
    """With a user configured, the right password connects and anonymous or wrong ones fail."""
    sim = await sim_factory(
        "steady",
        modbus=False,
        opcua=True,
        opcua_security=OpcUaSecurity(username="operator", password="s3cret-pass"),  # noqa: S106  # test-only credential
    )
    ok = Client(sim.opcua_endpoint)
    ok.set_user("operator")
    ok.set_password("s3cret-pass")
    async with ok:
        idx = await ok.get_namespace_index(NAMESPACE_URI)
        assert await ok.get_node(f"ns={idx};s=M1.Running").read_value() is True
    wrong = Client(sim.opcua_endpoint)
    wrong.set_user("operator")
    wrong.set_password("nope")
    with pytest.raises(ua.UaStatusCodeError):
        await wrong.connect()
    await wrong.disconnect()
    anonymous = Client(sim.opcua_endpoint)
    with pytest.raises(ua.UaError):
        await anonymous.connect()
    await anonymous.disconnect()


async def test_restart_on_same_port(sim_factory: SimFactory) -> None:
    """The OPC-UA server restarts on the same port; a new session reads current values."""
    sim = await sim_factory("steady", modbus=False, opcua=True)
    endpoint = sim.opcua_endpoint
    assert sim.opcua is not None
    async with Client(endpoint) as c:
        idx = await c.get_namespace_index(NAMESPACE_URI)
        assert await c.get_node(f"ns={idx};s=M1.Running").read_value() is True
    await sim.opcua.restart()
    assert sim.opcua_endpoint == endpoint
    await sim.advance(10.5)
    async with Client(endpoint) as c:
        idx = await c.get_namespace_index(NAMESPACE_URI)
        good = await c.get_node(f"ns={idx};s=M1.GoodCount").read_value()
        assert good == sim.machine("M1").snapshot().good > 0


async def test_16_bit_counters_are_uint16_and_wrap(sim_factory: SimFactory) -> None:
    """With counter_bits = 16 the OPC-UA counters are UInt16 and wrap past 65535."""
    sim = await sim_factory("rollover", modbus=False, opcua=True)
    await sim.advance(30.25)  # 60 parts from 65500
    async with Client(sim.opcua_endpoint) as c:
        idx = await c.get_namespace_index(NAMESPACE_URI)
        dv = await c.get_node(f"ns={idx};s=M1.GoodCount").read_data_value()
        assert dv.Value.VariantType == ua.VariantType.UInt16
        assert dv.Value.Value == (65500 + 60) % 65536
        m2 = await c.get_node(f"ns={idx};s=M2.GoodCount").read_data_value()
        assert m2.Value.VariantType == ua.VariantType.UInt32
        assert m2.Value.Value == (2**32 - 50 + 60) % 2**32


async def test_publish_stall_silences_subscriptions_but_not_reads(
    sim_factory: SimFactory,
) -> None:
    """During a scripted stall no Publish is answered (no data, no keepalive); reads work.

    Changes made during the stall are delivered when it ends, and the stall is in the truth.
    """
    sim = await sim_factory("flat", modbus=False, opcua=True)
    async with Client(sim.opcua_endpoint) as c:
        idx = await c.get_namespace_index(NAMESPACE_URI)
        running = c.get_node(f"ns={idx};s=M1.Running")
        handler = _Collector()
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=50,
            RequestedMaxKeepAliveCount=2,
            RequestedLifetimeCount=100,
            PublishingEnabled=True,
        )
        sub = await c.create_subscription(params, handler)
        await sub.subscribe_data_change([running])
        await _wait_for(handler.queue, (f"ns={idx};s=M1.Running", True))
        await asyncio.sleep(0.3)
        assert sub.last_publish_at is not None  # keepalives every 100 ms
        await sim.advance(150.0)  # the stall starts at 150 s
        await asyncio.sleep(0.3)  # a publish already in flight may still land
        silent_from = sub.last_publish_at
        await asyncio.sleep(0.5)
        assert sub.last_publish_at == silent_from  # five keepalive periods: nothing
        assert await running.read_value() is True  # the session and reads keep working
        await sim.advance(160.0)  # 310 s: fault 9 since 300 s, stall over since 250 s
        await _wait_for(handler.queue, (f"ns={idx};s=M1.Running", False))
        assert sub.last_publish_at is not None
        assert sub.last_publish_at > silent_from
    stalls = [r for r in sim.truth.records if r.get("type") == "opcua_stall"]
    assert [(r["start_s"], r["end_s"]) for r in stalls] == [(150.0, 310.0)]
    assert stalls[0]["start_ts"] == pytest.approx(sim.clock.wall_ts(150.0))
