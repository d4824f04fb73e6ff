"""Typed, frozen configuration of OPC-UA devices and tags, parsed from TOML.

:func:`parse_device` reads one ``[devices.<name>]`` table (``protocol =
"opcua"``) through :class:`edge_agent.configkit.Table`, so every problem is
reported with file, dotted key path and expectation, and unknown keys are
errors. Node syntax is checked here without I/O and without importing
asyncua; secrets are *not* read here (only where they come from is checked),
and nothing touches the network or the file system.

The state directory (where the client certificate and the trust list live
unless configured) is not a device key: the agent's config loader fills
:attr:`OpcuaDevice.state_dir` from ``[agent].state_dir`` with
:func:`bind_state_dir` (default ``/var/lib/edge-agent``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.opcua.nodes import (
    BrowsePath,
    NodeRef,
    check_browse_path,
    check_node_id,
    parse_browse_path,
    parse_node_id,
)
from drivers.reconnect import parse_reconnect
from edge_agent.configkit import Table

PROTOCOL = "opcua"
DEFAULT_STATE_DIR = Path("/var/lib/edge-agent")


class Mode(str, enum.Enum):
    """How values are obtained: monitored items, or batched reads on a grid."""

    SUBSCRIBE = "subscribe"
    POLL = "poll"


class SecurityPolicy(str, enum.Enum):
    """Supported message security policies (asyncua class suffix in :attr:`asyncua_name`)."""

    NONE = "None"
    BASIC256SHA256 = "Basic256Sha256"
    AES128_SHA256_RSAOAEP = "Aes128_Sha256_RsaOaep"

    @property
    def asyncua_name(self) -> str:
        """Suffix of the asyncua ``SecurityPolicy<X>`` class."""
        return {
            "None": "None",
            "Basic256Sha256": "Basic256Sha256",
            "Aes128_Sha256_RsaOaep": "Aes128Sha256RsaOaep",
        }[self.value]


class SecurityMode(str, enum.Enum):
    """Message security mode."""

    NONE = "None"
    SIGN = "Sign"
    SIGN_AND_ENCRYPT = "SignAndEncrypt"


class Identity(str, enum.Enum):
    """User identity token presented when activating the session."""

    ANONYMOUS = "anonymous"
    USERNAME = "username"
    CERTIFICATE = "certificate"


class DeadbandType(str, enum.Enum):
    """DataChangeFilter deadband type (OPC-UA Part 4 7.22.2)."""

    ABSOLUTE = "absolute"
    PERCENT = "percent"


@dataclass(frozen=True, slots=True, kw_only=True)
class OpcuaTag:
    """One variable of a device.

    Exactly one of ``node`` and ``browse_path`` is set.
    """

    name: str
    node: NodeRef | None = None
    browse_path: BrowsePath | None = None
    sampling_interval_ms: float | None = None
    queue_size: int = 1
    deadband: float | None = None
    deadband_type: DeadbandType = DeadbandType.ABSOLUTE
    unit: str = ""

    @property
    def address(self) -> str:
        """The address as written in the config (for messages and diagnostics)."""
        return str(self.node) if self.node is not None else str(self.browse_path)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpcuaDevice:
    """One ``[devices.<name>]`` with ``protocol = "opcua"``.

    Satisfies ``drivers.base.DeviceConfig``.
    """

    name: str
    endpoint: str
    tags: tuple[OpcuaTag, ...]
    protocol: str = PROTOCOL
    mode: Mode = Mode.SUBSCRIBE
    interval_ms: int = 1000
    security_policy: SecurityPolicy = SecurityPolicy.NONE
    security_mode: SecurityMode = SecurityMode.NONE
    identity: Identity = Identity.ANONYMOUS
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    client_certificate: Path | None = None
    client_private_key: Path | None = None
    trust_dir: Path | None = None
    timeout_ms: int = 4000
    watchdog_s: float = 30.0
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 1.0
    state_dir: Path = field(default=DEFAULT_STATE_DIR)

    @property
    def tag_names(self) -> tuple[str, ...]:
        """Names of the configured tags."""
        return tuple(t.name for t in self.tags)

    @property
    def secured(self) -> bool:
        """Whether messages are signed (and maybe encrypted)."""
        return self.security_policy is not SecurityPolicy.NONE

    @property
    def resolved_trust_dir(self) -> Path:
        """Trust list directory: configured, or ``<state_dir>/opcua/trusted``."""
        return self.trust_dir or self.state_dir / "opcua" / "trusted"

    @property
    def resolved_certificate(self) -> Path:
        """Client certificate (DER): configured, or ``<state_dir>/opcua/client-cert.der``."""
        return self.client_certificate or self.state_dir / "opcua" / "client-cert.der"

    @property
    def resolved_private_key(self) -> Path:
        """Client private key (PEM): configured, or ``<state_dir>/opcua/client-key.pem``."""
        return self.client_private_key or self.state_dir / "opcua" / "client-key.pem"

    def session_key(self) -> tuple[Any, ...]:
        """Devices with equal keys share one session (one link)."""
        return (
            self.endpoint,
            self.security_policy,
            self.security_mode,
            self.identity,
            self.username,
            self.password_env,
            self.password_file,
            self.resolved_certificate,
            self.resolved_private_key,
            self.resolved_trust_dir,
            self.timeout_ms,
        )


def bind_state_dir(devices: Iterable[OpcuaDevice], state_dir: Path) -> list[OpcuaDevice]:
    """Return copies of ``devices`` whose default security paths live under ``state_dir``."""
    return [dataclasses.replace(d, state_dir=state_dir) for d in devices]


def _check_endpoint(value: str) -> str | None:
    if not value.startswith("opc.tcp://") or len(value) <= len("opc.tcp://"):
        return "expected an endpoint URL like 'opc.tcp://host:4840/path'"
    return None


def _parse_tag(name: str, table: Table) -> OpcuaTag:
    has_node, has_path = table.has("node"), table.has("browse_path")
    node: NodeRef | None = None
    path: BrowsePath | None = None
    if has_node == has_path:
        table.error("node", "expected exactly one of 'node' and 'browse_path'")
        table.get_raw("browse_path")
    if has_node:
        text = table.get_str("node", check=check_node_id)
        if text and check_node_id(text) is None:
            node = parse_node_id(text)
    if has_path:
        text = table.get_str("browse_path", check=check_browse_path)
        if text and check_browse_path(text) is None:
            path = parse_browse_path(text)
    sampling = table.get_float("sampling_interval_ms", None, min=0.0)
    queue_size = table.get_int("queue_size", 1, min=1, max=10_000)
    # "filter_" because plain `deadband` is the agent's own publishing deadband (telemetry),
    # read for every protocol; this one is the server-side DataChangeFilter.
    deadband = table.get_float("filter_deadband", None, min=0.0)
    deadband_type = table.get_enum("filter_deadband_type", DeadbandType, DeadbandType.ABSOLUTE)
    if deadband_type is DeadbandType.PERCENT and deadband is not None and deadband > 100:
        table.error(
            "filter_deadband",
            "expected a percentage from 0 to 100 with filter_deadband_type = 'percent'",
        )
    unit = table.get_str("unit", "", nonempty=False)
    table.finish()
    return OpcuaTag(
        name=name,
        node=node,
        browse_path=path,
        sampling_interval_ms=sampling,
        queue_size=queue_size,
        deadband=deadband,
        deadband_type=deadband_type,
        unit=unit,
    )


def parse_device(name: str, table: Table) -> OpcuaDevice:
    """Build an :class:`OpcuaDevice` from its TOML table, recording every problem.

    Args:
        name: Device name (the key under ``devices``).
        table: The ``devices.<name>`` table; ``protocol`` is marked used here.

    Returns:
        The device config. When problems were recorded in ``table.issues`` the
        result holds placeholders and must not be used.
    """
    table.get_str("protocol", choices=(PROTOCOL,))
    endpoint = table.get_str("endpoint", check=_check_endpoint)
    mode = table.get_enum("mode", Mode, Mode.SUBSCRIBE)
    interval_ms = table.get_int("interval_ms", 1000, min=10, max=86_400_000)
    policy = table.get_enum("security_policy", SecurityPolicy, SecurityPolicy.NONE)
    sec_mode = table.get_enum("security_mode", SecurityMode, SecurityMode.NONE)
    if (policy is SecurityPolicy.NONE) != (sec_mode is SecurityMode.NONE):
        table.error(
            "security_mode",
            "expected 'None' together with security_policy = 'None', "
            "and 'Sign' or 'SignAndEncrypt' otherwise",
        )
    identity = table.get_enum("identity", Identity, Identity.ANONYMOUS)
    username = table.get_str("username", None)
    password_env = table.get_str("password_env", None)
    password_file = table.get_str("password_file", None)
    if identity is Identity.USERNAME:
        if not username:
            table.error("username", "missing, expected a user name with identity = 'username'")
        if (password_env is None) == (password_file is None):
            table.error(
                "password_env", "expected exactly one of 'password_env' and 'password_file'"
            )
    elif username or password_env or password_file:
        table.error(
            "identity", "expected 'username' when username/password_env/password_file are set"
        )
    cert = table.get_str("client_certificate", None)
    key = table.get_str("client_private_key", None)
    if (cert is None) != (key is None):
        table.error(
            "client_certificate",
            "expected both 'client_certificate' and 'client_private_key', or neither",
        )
    trust_dir = table.get_str("trust_dir", None)
    timeout_ms = table.get_int("timeout_ms", 4000, min=100, max=600_000)
    watchdog_s = table.get_float("watchdog_s", 30.0, min=1.0, max=86_400.0)
    if watchdog_s * 1000 < interval_ms:
        table.error("watchdog_s", f"expected at least interval_ms ({interval_ms} ms)")
    reconnect_min, reconnect_max = parse_reconnect(table, interval_ms)
    tags: list[OpcuaTag] = []
    if not table.has("tags"):
        table.error("tags", "missing, expected at least one [devices.<name>.tags.<tag>] table")
    for tag_name, tag_table in table.tables("tags"):
        tags.append(_parse_tag(tag_name, tag_table))
    if table.has("tags") and isinstance(table.data["tags"], dict) and not table.data["tags"]:
        table.error("tags", "expected at least one tag")
    table.finish()
    return OpcuaDevice(
        name=name,
        endpoint=endpoint,
        tags=tuple(tags),
        mode=mode,
        interval_ms=interval_ms,
        security_policy=policy,
        security_mode=sec_mode,
        identity=identity,
        username=username,
        password_env=password_env,
        password_file=Path(password_file) if password_file else None,
        client_certificate=Path(cert) if cert else None,
        client_private_key=Path(key) if key else None,
        trust_dir=Path(trust_dir) if trust_dir else None,
        timeout_ms=timeout_ms,
        watchdog_s=watchdog_s,
        reconnect_min_s=reconnect_min,
        reconnect_max_s=reconnect_max,
    )
