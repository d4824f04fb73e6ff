"""``[mqtt]``: broker address, protocol, TLS, credentials, session, flow control, topics.

:func:`parse_mqtt` reads the section through :class:`~edge_agent.configkit.Table`
(every problem names its dotted key path) into a frozen :class:`MqttConfig`. It
does no I/O: certificate and password files are only resolved to absolute paths
here and read when connecting. The password itself never enters the config
object (only the environment variable name or the file path does), so printing
a config cannot leak it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.configkit import Table
from edge_agent.uplink.sparkplug.config import SparkplugConfig, parse_sparkplug
from edge_agent.uplink.topics import (
    COMMON,
    DEFAULT_PREFIX,
    DEFAULT_TEMPLATES,
    KIND_FIELDS,
    check_template,
)


class MqttProtocol(str, enum.Enum):
    """MQTT protocol version."""

    V5 = "5"
    V311 = "3.1.1"


class Transport(str, enum.Enum):
    """Plain TCP or TLS."""

    TCP = "tcp"
    TLS = "tls"


class SessionMode(str, enum.Enum):
    """``persistent``: 3.1.1 clean_session=False / v5 clean_start=False + expiry; ``clean``."""

    PERSISTENT = "persistent"
    CLEAN = "clean"


class PayloadFormat(str, enum.Enum):
    """What the uplink publishes.

    ``json``: the versioned JSON envelope on the agent's topic templates (default).
    ``sparkplug_b``: a Sparkplug B 3.0 Edge Node (``spBv1.0`` topics, Tahu protobuf
    payloads), see :mod:`edge_agent.uplink.sparkplug`. Both read the same outbox.
    """

    JSON = "json"
    SPARKPLUG_B = "sparkplug_b"


class DrainOrder(str, enum.Enum):
    """How the backlog is sent after an outage.

    ``oldest_first``: strictly in seq order (new messages wait behind the backlog).
    ``live_first``: messages produced since the reconnect share the in-flight window
    with the backlog (at least half of it goes to the backlog), so fresh data is not
    delayed by hours of buffered telemetry; the consumer re-orders by ``seq``.
    """

    OLDEST_FIRST = "oldest_first"
    LIVE_FIRST = "live_first"


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttConfig:
    """Validated ``[mqtt]`` section (see ``docs/pipeline.md`` for each key)."""

    host: str = "127.0.0.1"
    port: int = 1883
    protocol: MqttProtocol = MqttProtocol.V5
    transport: Transport = Transport.TCP
    client_id: str = ""
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    username: str = ""
    password_env: str = ""
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    session: SessionMode = SessionMode.PERSISTENT
    session_expiry_s: int = 3600
    max_in_flight: int = 100
    drain_order: DrainOrder = DrainOrder.OLDEST_FIRST
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    probe_interval_s: float = 5.0
    ack_timeout_s: float = 30.0
    topic_prefix: str = DEFAULT_PREFIX
    topics: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    payload: PayloadFormat = PayloadFormat.JSON
    sparkplug: SparkplugConfig | None = None

    def summary(self) -> str:
        """One line for ``check-config`` (never includes credentials)."""
        scheme = "mqtts" if self.transport is Transport.TLS else "mqtt"
        auth = f" user {self.username}" if self.username else ""
        return (
            f"{scheme}://{self.host}:{self.port} v{self.protocol.value}"
            f" {self.session.value} session,"
            f" {self.max_in_flight} in flight, {self.drain_order.value}{auth}{self._spb()}"
        )

    def _spb(self) -> str:
        spb = self.sparkplug
        if self.payload is not PayloadFormat.SPARKPLUG_B or spb is None:
            return ""
        host = f", primary host {spb.primary_host_id}" if spb.primary_host_id else ""
        return f", Sparkplug B group {spb.group_id} qos {spb.qos.value}{host}"

    def effective_client_id(self, agent_id: str) -> str:
        """The configured client id, or ``edge-agent-<agent id>``."""
        return self.client_id or f"edge-agent-{agent_id}"


def _path(table: Table, key: str, base_dir: Path) -> Path | None:
    raw = table.get_str(key, "", nonempty=False)
    if not raw:
        return None
    path = Path(raw).expanduser()
    return path if path.is_absolute() else base_dir / path


def parse_mqtt(table: Table | None, *, base_dir: Path) -> MqttConfig:
    """Build a :class:`MqttConfig` from ``[mqtt]`` (``None`` means all defaults).

    Args:
        table: The ``[mqtt]`` table or ``None`` when absent.
        base_dir: Directory of the config file; relative file paths are resolved against it.
    """
    if table is None:
        return MqttConfig()
    t = table
    host = t.get_str("host", "127.0.0.1")
    transport = t.get_enum("transport", Transport, Transport.TCP)
    port = t.get_int("port", 8883 if transport is Transport.TLS else 1883, min=1, max=65535)
    protocol = t.get_enum("protocol", MqttProtocol, MqttProtocol.V5)
    client_id = t.get_str("client_id", "", nonempty=False)
    if len(client_id.encode()) > 65535 or any(c in client_id for c in "+#/"):
        t.error("client_id", "must be short and not contain '/', '+' or '#'")
    keepalive_s = t.get_int("keepalive_s", 30, min=5, max=65535)
    connect_timeout_s = t.get_float("connect_timeout_s", 10.0, positive=True)
    username = t.get_str("username", "", nonempty=False)
    password_env = t.get_str("password_env", "", nonempty=False)
    password_file = _path(t, "password_file", base_dir)
    if password_env and password_file is not None:
        t.error("password_file", "set either password_env or password_file, not both")
    if (password_env or password_file) and not username:
        t.error("username", "missing, expected a username when a password is configured")
    ca_file = _path(t, "ca_file", base_dir)
    cert_file = _path(t, "cert_file", base_dir)
    key_file = _path(t, "key_file", base_dir)
    tls_insecure = t.get_bool("tls_insecure", False)
    if transport is Transport.TCP:
        for key, value in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
            if value is not None:
                t.error(key, 'only valid with transport = "tls"')
        if tls_insecure:
            t.error("tls_insecure", 'only valid with transport = "tls"')
    if (cert_file is None) != (key_file is None):
        t.error(
            "key_file" if key_file is None else "cert_file", "cert_file and key_file go together"
        )
    payload = t.get_enum("payload", PayloadFormat, PayloadFormat.JSON)
    sparkplug_b = payload is PayloadFormat.SPARKPLUG_B
    # Sparkplug 3.0 requires a clean MQTT session (3.1.1 Clean Session, v5 Clean Start
    # with Session Expiry 0); the outbox is what survives a reconnect.
    session = t.get_enum(
        "session", SessionMode, SessionMode.CLEAN if sparkplug_b else SessionMode.PERSISTENT
    )
    if sparkplug_b and session is SessionMode.PERSISTENT:
        t.error("session", 'must be "clean" with payload = "sparkplug_b" (Sparkplug 3.0 rule)')
    sparkplug: SparkplugConfig | None = None
    if sparkplug_b:
        sparkplug = parse_sparkplug(t.table("sparkplug"), t)
    elif t.has("sparkplug"):
        t.table("sparkplug")
        t.error("sparkplug", 'only valid with payload = "sparkplug_b"')
    session_expiry_s = t.get_int("session_expiry_s", 3600, min=0, max=4_294_967_295)
    max_in_flight = t.get_int("max_in_flight", 100, min=1, max=65535)
    drain_order = t.get_enum("drain_order", DrainOrder, DrainOrder.OLDEST_FIRST)
    reconnect_min_s = t.get_float("reconnect_min_s", 1.0, positive=True)
    reconnect_max_s = t.get_float("reconnect_max_s", 60.0, positive=True)
    if reconnect_max_s < reconnect_min_s:
        t.error("reconnect_max_s", f"must be >= reconnect_min_s ({reconnect_min_s})")
    probe_interval_s = t.get_float("probe_interval_s", 5.0, min=0.5, max=3600.0)
    ack_timeout_s = t.get_float("ack_timeout_s", 30.0, positive=True)
    prefix = t.get_str(
        "topic_prefix",
        DEFAULT_PREFIX,
        check=lambda v: check_template(v, frozenset({"site", "agent"})),
    )
    topics = dict(DEFAULT_TEMPLATES)
    sub = t.table("topics")
    if sub is not None:
        for kind in DEFAULT_TEMPLATES:
            allowed = COMMON | KIND_FIELDS[kind]
            topics[kind] = sub.get_str(
                kind,
                DEFAULT_TEMPLATES[kind],
                check=lambda v, allowed=allowed: check_template(v, allowed),  # type: ignore[misc]
            )
        sub.finish()
    t.finish()
    return MqttConfig(
        host=host,
        port=port,
        protocol=protocol,
        transport=transport,
        client_id=client_id,
        keepalive_s=keepalive_s,
        connect_timeout_s=connect_timeout_s,
        username=username,
        password_env=password_env,
        password_file=password_file,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        tls_insecure=tls_insecure,
        session=session,
        session_expiry_s=session_expiry_s,
        max_in_flight=max_in_flight,
        drain_order=drain_order,
        reconnect_min_s=reconnect_min_s,
        reconnect_max_s=reconnect_max_s,
        probe_interval_s=probe_interval_s,
        ack_timeout_s=ack_timeout_s,
        topic_prefix=prefix,
        topics=topics,
        payload=payload,
        sparkplug=sparkplug,
    )
