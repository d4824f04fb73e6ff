"""OPC-UA front end (asyncua 2.1): one object per machine in ``urn:edge-agent:simulator``.

Each machine is an object ``ns=<idx>;s=<ID>`` with typed variables
``ns=<idx>;s=<ID>.<Name>`` (see :data:`simulators.describe.UA_VARIABLES`) and
numeric-id mirrors ``ns=<idx>;i=<1000*ordinal+k>`` of Running, FaultCode,
GoodCount and TotalCount. :meth:`OpcUaServer.publish` writes only values
that changed, with the sim instant's wall time as SourceTimestamp; during a
machine's comms outage its variables go ``BadNoCommunication`` (what a
gateway reports for a dead PLC behind it). Note asyncua ignores the
subscription sampling interval and notifies on every write (library notes
§0.4), so we publish at most once per host tick.

Security: None, and/or Basic256Sha256 Sign / SignAndEncrypt. The server
certificate and key are generated on first start into ``state_dir`` and
reused afterwards. With ``trust_dir`` only client certificates found there
are accepted (asyncua accepts any certificate unless TRUSTED_VALIDATION is
set, library notes §2). With ``username`` anonymous login is disabled and
the password is compared in constant time; it is never logged.

Publish stalls (scenario ``[opcua] publish_stalls``, switched by the host
through :attr:`OpcUaServer.stalled`): while stalled, no subscription of the
server answers a Publish request, neither with data nor with a keepalive;
changes stay queued (latest value per item) and go out when the stall ends.
Reads, browsing and the session keep working, so a client sees a server that
is "connected but silent". asyncua has no switch for this: each server-side
subscription's ``has_published_results`` (the check its publishing loop
makes every interval) is wrapped when the subscription is created.

:meth:`OpcUaServer.restart` stops and starts a fresh asyncua server on the
*same* port (reconnect tests). Port 0 is resolved to a free port *before*
start, because asyncua advertises endpoint URLs from the configured port.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from asyncua import ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulators import NAMESPACE_URI
from simulators.describe import OPCUA_PATH, UA_NUMERIC, UA_VARIABLES, numeric_id
from simulators.device import MachineDevice
from simulators.model import Snapshot

log = logging.getLogger("simulators.opcua")

APPLICATION_URI = "urn:edge-agent:simulator:server"

_VTYPE = {
    "Boolean": ua.VariantType.Boolean,
    "UInt16": ua.VariantType.UInt16,
    "UInt32": ua.VariantType.UInt32,
    "Float": ua.VariantType.Float,
    "Double": ua.VariantType.Double,
    "String": ua.VariantType.String,
}
# asyncua annotates its constructors with NewType-style aliases (Int16, UInt32, DateTime);
# plain Python values are what it accepts at runtime, so the constructors are used untyped.
_NodeId: Any = ua.NodeId
_DataValue: Any = ua.DataValue
_StatusCode: Any = ua.StatusCode
_BAD = _StatusCode(StatusCodes.BadNoCommunication)


class UaSecurityMode(enum.Enum):
    """Which endpoints the server offers."""

    NONE = "none"
    SIGN = "sign"
    SIGN_ENCRYPT = "sign-encrypt"
    ALL = "all"


@dataclass(frozen=True, slots=True, kw_only=True)
class OpcUaSecurity:
    """OPC-UA security options."""

    modes: UaSecurityMode | str = UaSecurityMode.NONE
    trust_dir: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def policies(self) -> list[ua.SecurityPolicyType]:
        """The asyncua security policy list for the chosen mode."""
        mode = UaSecurityMode(self.modes)
        p = ua.SecurityPolicyType
        return {
            UaSecurityMode.NONE: [p.NoSecurity],
            UaSecurityMode.SIGN: [p.Basic256Sha256_Sign],
            UaSecurityMode.SIGN_ENCRYPT: [p.Basic256Sha256_SignAndEncrypt],
            UaSecurityMode.ALL: [
                p.NoSecurity,
                p.Basic256Sha256_Sign,
                p.Basic256Sha256_SignAndEncrypt,
            ],
        }[mode]


class _PasswordUsers:
    """asyncua user manager accepting exactly one user name and password."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password.encode()

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is None or password is None:
            return None
        ok_user = hmac.compare_digest(username.encode(), self._username.encode())
        ok_pass = hmac.compare_digest(password.encode(), self._password)
        return User(role=UserRole.User) if ok_user and ok_pass else None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _values(snap: Snapshot, counter_bits: int) -> dict[str, Any]:
    mask = (1 << counter_bits) - 1
    return {
        "State": int(snap.state),
        "Running": snap.running,
        "FaultCode": snap.fault_code,
        "AlarmWord": snap.alarm_word,
        "StatusWord": snap.status_word,
        "GoodCount": snap.good & mask,
        "ScrapCount": snap.scrap & mask,
        "TotalCount": snap.total & mask,
        "Speed": snap.speed,
        "Temperature": snap.temperature,
        "CycleTime": snap.cycle_time_s,
        "StatusText": snap.status_text,
        "RestartCount": snap.restart_count & 0xFFFF,
    }


class OpcUaServer:
    """Async context manager serving machines over OPC-UA.

    Args:
        devices: Machines in scenario order (ordinal = position + 1).
        host: Address to bind.
        port: TCP port; 0 picks a free port (kept across :meth:`restart`).
        state_dir: Where the server certificate lives (needed for Basic256Sha256).
        security: Security options; default None policy, anonymous.
        wall_ts: Sim seconds -> wall epoch for SourceTimestamp (default: now).
    """

    def __init__(
        self,
        devices: Sequence[MachineDevice],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path | None = None,
        security: OpcUaSecurity | None = None,
        wall_ts: Any = None,
    ) -> None:
        self.devices = list(devices)
        self.host = host
        self.port = port if port else _free_port(host)
        self.state_dir = state_dir
        self.security = security or OpcUaSecurity()
        self._wall_ts = wall_ts
        self._server: Server | None = None
        self.namespace_index = 0
        self._nodes: dict[str, list[tuple[ua.NodeId, ua.VariantType]]] = {}
        self._last: dict[str, dict[str, Any]] = {}
        self._bad: set[str] = set()
        self.writes = 0
        self.stalled = False

    @property
    def endpoint(self) -> str:
        """Endpoint URL clients connect to."""
        return f"opc.tcp://{self.host}:{self.port}{OPCUA_PATH}"

    async def _certificate(self, server: Server) -> None:
        if self.state_dir is None:
            raise ValueError("Basic256Sha256 needs state_dir for the server certificate")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        key = self.state_dir / "server-key.pem"
        cert = self.state_dir / "server-cert.der"
        await setup_self_signed_certificate(
            key,
            cert,
            APPLICATION_URI,
            socket.gethostname(),
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {"commonName": "edge-agent simulator", "organizationName": "edge-agent"},
        )
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))

    async def start(self) -> None:
        """Build the address space and start listening."""
        sec = self.security
        users = (
            _PasswordUsers(sec.username, sec.password or "") if sec.username is not None else None
        )
        server = Server(user_manager=users)  # type: ignore[arg-type]
        await server.init()
        self._gate_publishing(server)
        server.set_endpoint(self.endpoint)
        server.set_server_name("edge-agent simulator")
        await server.set_application_uri(APPLICATION_URI)
        policies = sec.policies()
        server.set_security_policy(policies)
        if policies != [ua.SecurityPolicyType.NoSecurity]:
            await self._certificate(server)
        if sec.trust_dir is not None:
            store = TrustStore([sec.trust_dir], [])
            await store.load()
            server.set_certificate_validator(
                CertificateValidator(
                    CertificateValidatorOptions.TRUSTED_VALIDATION
                    | CertificateValidatorOptions.PEER_CLIENT,
                    store,
                )
            )
        if sec.username is not None:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        idx = await server.register_namespace(NAMESPACE_URI)
        self.namespace_index = idx
        self._nodes.clear()
        self._last.clear()
        self._bad.clear()
        for ordinal, dev in enumerate(self.devices, start=1):
            await self._add_machine(server, idx, ordinal, dev)
        await server.start()
        self._server = server
        await self.publish()

    def _gate_publishing(self, server: Server) -> None:
        """Make every subscription created on ``server`` stay silent while :attr:`stalled`."""
        service = server.iserver.subscription_service
        create = service.create_subscription

        async def create_gated(*args: Any, **kwargs: Any) -> ua.CreateSubscriptionResult:
            result = await create(*args, **kwargs)
            # create_subscription starts the publishing loop as a task that has not run yet,
            # so the gate is in place before the subscription's first publish.
            sub = service.subscriptions[result.SubscriptionId]
            ready = sub.has_published_results

            def gated() -> bool:
                # While stalled: no data, no keepalive, and the keepalive and lifetime
                # counters do not advance (the server is stuck, not counting).
                return False if self.stalled else ready()

            setattr(sub, "has_published_results", gated)  # noqa: B010 - shadows the method
            return result

        setattr(service, "create_subscription", create_gated)  # noqa: B010

    async def _add_machine(
        self, server: Server, idx: int, ordinal: int, dev: MachineDevice
    ) -> None:
        mid = dev.spec.id
        obj = await server.nodes.objects.add_object(_NodeId(mid, idx), ua.QualifiedName(mid, idx))
        snap_values = _values(dev.snapshot(), dev.spec.quirks.counter_bits)
        nodes: list[tuple[ua.NodeId, ua.VariantType]] = []
        for var in UA_VARIABLES:
            vtype = _VTYPE[var.type]
            if var.name.endswith("Count") and dev.spec.quirks.counter_bits == 16:
                vtype = ua.VariantType.UInt16
            nid = _NodeId(f"{mid}.{var.name}", idx)
            await obj.add_variable(
                nid, ua.QualifiedName(var.name, idx), ua.Variant(snap_values[var.name], vtype)
            )
            nodes.append((nid, vtype))
        self._nodes[mid] = nodes
        mirrors: list[tuple[ua.NodeId, ua.VariantType]] = []
        for name in UA_NUMERIC:
            i = [v.name for v in UA_VARIABLES].index(name)
            nid = _NodeId(numeric_id(ordinal, name), idx)
            await obj.add_variable(
                nid,
                ua.QualifiedName(f"{name}Numeric", idx),
                ua.Variant(snap_values[name], nodes[i][1]),
            )
            mirrors.append((nid, nodes[i][1]))
        self._nodes[mid + "#numeric"] = mirrors

    async def publish(self) -> None:
        """Write every changed value of every machine (no-op when stopped)."""
        server = self._server
        if server is None:
            return
        for dev in self.devices:
            # Let queued Modbus requests run between machines: a publish of 50 machines is
            # hundreds of writes and must not hold the loop for one long stretch.
            await asyncio.sleep(0)
            if self._server is not server:
                return  # stopped or restarted meanwhile
            mid = dev.spec.id
            nodes = self._nodes[mid]
            mirrors = self._nodes[mid + "#numeric"]
            if dev.outage_mode is not None:
                if mid not in self._bad:
                    self._bad.add(mid)
                    self._last.pop(mid, None)
                    for nid, _vt in nodes + mirrors:
                        await server.write_attribute_value(nid, _DataValue(StatusCode=_BAD))
                continue
            self._bad.discard(mid)
            snap = dev.snapshot()
            values = _values(snap, dev.spec.quirks.counter_bits)
            last = self._last.get(mid)
            if last == values:
                continue
            ts = self._timestamp(snap.t)
            for var, (nid, vtype) in zip(UA_VARIABLES, nodes, strict=True):
                v = values[var.name]
                if last is None or last[var.name] != v:
                    await self._write(server, nid, v, vtype, ts)
                    if var.name in UA_NUMERIC:
                        mnid, mvt = mirrors[UA_NUMERIC.index(var.name)]
                        await self._write(server, mnid, v, mvt, ts)
            self._last[mid] = values

    def _timestamp(self, sim_t: float) -> datetime:
        if self._wall_ts is None:
            return datetime.now(timezone.utc)
        return datetime.fromtimestamp(self._wall_ts(sim_t), tz=timezone.utc)

    async def _write(
        self, server: Server, nid: ua.NodeId, value: Any, vtype: ua.VariantType, ts: datetime
    ) -> None:
        self.writes += 1
        dv = _DataValue(Value=ua.Variant(value, vtype), SourceTimestamp=ts, ServerTimestamp=ts)
        await server.write_attribute_value(nid, dv)

    async def stop(self) -> None:
        """Stop the server (clients see the connection drop)."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    async def restart(self) -> None:
        """Stop, then start a fresh server on the same port."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> OpcUaServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
