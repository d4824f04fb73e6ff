"""In-test asyncua servers for the OPC-UA driver tests (loopback, free port, one event loop).

Builds a small address space that exercises every NodeId form and data type
the driver maps: a machine object ``M1`` with counters, a float with
EUInformation (AnalogItemType), a string, a DateTime, an array, and variables
with GUID and opaque NodeIds. The namespace URI can be preceded by filler
namespaces so its index differs between two server instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.server.user_managers import UserManager

NS_URI = "urn:edge-agent:test-sim"
GUID = uuid.UUID("72962b91-fa75-4ae6-8d28-b404dc7daf63")
OPAQUE = b"\x01\x02opaque"
USER, PASSWORD = "operator", "s3cret-pass"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Users(UserManager):
    """Accept anonymous and one username/password pair; reject wrong passwords."""

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        if username is None:
            return User(role=UserRole.User)
        if username == USER and password == PASSWORD:
            return User(role=UserRole.User)
        return None


class Collector:
    """A ReadingSink that records everything; tests wait for a condition, bounded in time."""

    def __init__(self) -> None:
        self.readings: list[Any] = []
        self.events: list[Any] = []
        self.confirmations: list[Any] = []
        # Everything in arrival order: ("readings", batch), ("comms", e), ("confirmation", c).
        self.order: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()

    def put_readings(self, readings: Any) -> None:
        """Record a batch."""
        self.readings.extend(readings)
        self.order.append(("readings", list(readings)))
        self._changed.set()

    def put_comms(self, event: Any) -> None:
        """Record a comms event."""
        self.events.append(event)
        self.order.append(("comms", event))
        self._changed.set()

    def put_confirmation(self, confirmation: Any) -> None:
        """Record a confirmation of a device's unchanged values."""
        self.confirmations.append(confirmation)
        self.order.append(("confirmation", confirmation))
        self._changed.set()

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds; fail after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"condition not met within {timeout} s")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def values(self, tag: str) -> list[Any]:
        """Good values of one tag, in arrival order."""
        return [r.value for r in self.readings if r.tag == tag and r.quality.value == "good"]


@dataclass
class SimServer:
    """A running server and handles to its variables."""

    server: Server
    endpoint: str
    ns: int
    nodes: dict[str, Node] = field(default_factory=dict)

    async def write(self, name: str, value: Any, variant: ua.VariantType | None = None) -> None:
        """Write a value (server side) with a fresh SourceTimestamp."""
        node = self.nodes[name]
        dv = ua.DataValue(
            ua.Variant(value, variant) if variant else ua.Variant(value),
            SourceTimestamp=dt.datetime.now(dt.timezone.utc),
        )
        await node.write_value(dv)

    async def write_status(self, name: str, code: int, value: Any, variant: ua.VariantType) -> None:
        """Write a value with a non-good status code (as a gateway reports a sensor fault)."""
        stamp = dt.datetime.now(dt.timezone.utc)
        dv = ua.DataValue(
            ua.Variant(value, variant), StatusCode=ua.StatusCode(code), SourceTimestamp=stamp
        )
        await self.nodes[name].write_value(dv)

    def silence_subscriptions(self) -> int:
        """Stop every server-side publishing loop; sessions stay up ("connected but silent")."""
        subs = self.server.iserver.subscription_service.subscriptions.values()
        for sub in subs:
            if sub._task is not None:
                sub._task.cancel()
        return len(subs)

    async def stop(self) -> None:
        """Stop listening and close sessions."""
        await self.server.stop()


async def start_server(
    port: int,
    *,
    filler_namespaces: int = 0,
    security: list[ua.SecurityPolicyType] | None = None,
    cert_dir: Path | None = None,
) -> SimServer:
    """Start a server on ``opc.tcp://127.0.0.1:<port>/test/``."""
    server = Server(user_manager=_Users())
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{port}/test/"
    server.set_endpoint(endpoint)
    server.set_identity_tokens(
        [ua.AnonymousIdentityToken, ua.UserNameIdentityToken, ua.X509IdentityToken]
    )
    if security is not None:
        assert cert_dir is not None
        from asyncua.crypto.cert_gen import setup_self_signed_certificate
        from cryptography.x509.oid import ExtendedKeyUsageOID

        key, cert = cert_dir / "server-key.pem", cert_dir / "server-cert.der"
        uri = "urn:edge-agent:test-server"
        await setup_self_signed_certificate(
            key,
            cert,
            uri,
            "localhost",
            [ExtendedKeyUsageOID.SERVER_AUTH],
            {"commonName": "test-server"},
        )
        await server.set_application_uri(uri)
        server.set_security_policy(security)
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
    for k in range(filler_namespaces):
        await server.register_namespace(f"urn:filler:{k}")
    ns = await server.register_namespace(NS_URI)
    objects = server.nodes.objects
    m1 = await objects.add_object(ua.NodeId("M1", ns), ua.QualifiedName("M1", ns))
    sim = SimServer(server=server, endpoint=endpoint, ns=ns)
    sim.nodes["good"] = await m1.add_variable(
        ua.NodeId("M1.GoodCount", ns), ua.QualifiedName("GoodCount", ns), 0, ua.VariantType.UInt32
    )
    sim.nodes["running"] = await m1.add_variable(
        ua.NodeId("M1.Running", ns), ua.QualifiedName("Running", ns), False
    )
    sim.nodes["numeric"] = await m1.add_variable(
        ua.NodeId(1001, ns), ua.QualifiedName("Numeric", ns), -5, ua.VariantType.Int16
    )
    sim.nodes["guid"] = await m1.add_variable(
        ua.NodeId(GUID, ns, ua.NodeIdType.Guid),
        ua.QualifiedName("ByGuid", ns),
        7,
        ua.VariantType.Int32,
    )
    sim.nodes["opaque"] = await m1.add_variable(
        ua.NodeId(OPAQUE, ns, ua.NodeIdType.ByteString),
        ua.QualifiedName("ByOpaque", ns),
        "bytes",
        ua.VariantType.String,
    )
    sim.nodes["name"] = await m1.add_variable(
        ua.NodeId("M1.Product", ns), ua.QualifiedName("Product", ns), "widget"
    )
    sim.nodes["when"] = await m1.add_variable(
        ua.NodeId("M1.LastStop", ns),
        ua.QualifiedName("LastStop", ns),
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
    )
    sim.nodes["array"] = await m1.add_variable(
        ua.NodeId("M1.Temps", ns),
        ua.QualifiedName("Temps", ns),
        [1.5, 2.5, 3.5],
        ua.VariantType.Double,
    )
    temp = await m1.add_variable(
        ua.NodeId("M1.Temperature", ns),
        ua.QualifiedName("Temperature", ns),
        20.5,
        ua.VariantType.Double,
        datatype=ua.NodeId(ua.ObjectIds.Double),
    )
    eu = ua.EUInformation(
        NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
        UnitId=4408652,
        DisplayName=ua.LocalizedText("°C"),
        Description=ua.LocalizedText("degree Celsius"),
    )
    await temp.add_property(0, "EngineeringUnits", ua.Variant(eu, ua.VariantType.ExtensionObject))
    await temp.add_property(
        0, "EURange", ua.Variant(ua.Range(Low=0.0, High=200.0), ua.VariantType.ExtensionObject)
    )
    sim.nodes["temp"] = temp
    for node in sim.nodes.values():
        await node.set_writable()
    await server.start()
    return sim
