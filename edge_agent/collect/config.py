"""The collector's TOML configuration, read into frozen dataclasses.

Read through the same checked reader as the agent's config (:mod:`edge_agent.configkit`):
every mistake names the file, the dotted key and what was expected, all are reported at
once, unknown keys are errors, and nothing is connected while reading. Secrets (database
and broker passwords) come from an environment variable or a file named in the config,
never from the config itself, and are resolved only when connecting
(:func:`read_secret`). Example: ``config/collector.example.toml``.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.configkit import Issues, Table, load_toml
from edge_agent.errors import ConfigError
from edge_agent.evidence.keys import parse_fingerprint

# MQTT 5 shared subscription group names may not contain '/', '+' or '#'.
_GROUP = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DEFAULT_TOPICS = ("edge/#",)


class Transport(enum.Enum):
    """How the collector reaches the broker."""

    TCP = "tcp"
    TLS = "tls"


class MigrateMode(enum.Enum):
    """What ``run`` does with pending schema migrations."""

    AUTO = "auto"  # apply them (under an advisory lock: safe with several instances)
    CHECK = "check"  # refuse to start until `edge-agent-collect migrate` was run


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseConfig:
    """PostgreSQL connection and retry policy."""

    dsn: str
    password_env: str = ""
    password_file: Path | None = None
    connect_timeout_s: float = 10.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    migrate: MigrateMode = MigrateMode.AUTO


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig:
    """MQTT 5 session of one collector instance."""

    host: str
    port: int
    transport: Transport = Transport.TCP
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    username: str = ""
    password_env: str = ""
    password_file: Path | None = None
    client_id: str
    session_expiry_s: int = 86400
    keepalive_s: int = 30
    shared_group: str = ""
    topics: tuple[str, ...] = DEFAULT_TOPICS
    receive_maximum: int = 1000
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0

    def subscriptions(self) -> list[str]:
        """Topic filters as subscribed: ``$share/GROUP/filter`` when a group is set."""
        if not self.shared_group:
            return list(self.topics)
        return [f"$share/{self.shared_group}/{t}" for t in self.topics]


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchConfig:
    """How messages are grouped into one transaction."""

    max_messages: int = 500
    max_wait_ms: int = 20
    heartbeat_s: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceConfig:
    """Trust anchors for ``edge-agent-collect verify``, per agent id (contract annex)."""

    #: Per agent: device key fingerprints (64 hex digits, normalised).
    fingerprints: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Per agent: public key PEM files (read when verifying).
    key_files: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    #: ``run`` checks agents with new signed records this often (0: only ``verify``).
    verify_interval_s: float = 0.0

    def agents(self) -> list[str]:
        """Agents with at least one trust anchor."""
        return sorted(set(self.fingerprints) | set(self.key_files))


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorConfig:
    """The whole collector configuration."""

    database: DatabaseConfig
    mqtt: BrokerConfig
    batch: BatchConfig
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    source: str = ""


def _path(base: Path, text: str) -> Path | None:
    return (base / text) if text else None


def _check_topic(text: str) -> str | None:
    if not text or text.startswith("$share/"):
        return None
    parts = text.split("/")
    for i, part in enumerate(parts):
        if "#" in part and (part != "#" or i != len(parts) - 1):
            return None
        if "+" in part and part != "+":
            return None
    return text


def parse_database(table: Table) -> DatabaseConfig:
    """The ``[database]`` table."""
    base = Path(table.issues.file).resolve().parent if table.issues.file else Path.cwd()
    password_env = table.get_str("password_env", "")
    password_file = table.get_str("password_file", "")
    if password_env and password_file:
        table.error("password_file", "give password_env or password_file, not both")
    lo = table.get_float("reconnect_min_s", 0.5, positive=True)
    hi = table.get_float("reconnect_max_s", 30.0, positive=True)
    if hi < lo:
        table.error("reconnect_max_s", f"must be >= reconnect_min_s ({lo})")
    cfg = DatabaseConfig(
        dsn=table.get_str("dsn"),
        password_env=password_env,
        password_file=_path(base, password_file),
        connect_timeout_s=table.get_float("connect_timeout_s", 10.0, positive=True),
        reconnect_min_s=lo,
        reconnect_max_s=hi,
        migrate=table.get_enum("migrate", MigrateMode, MigrateMode.AUTO),
    )
    table.finish()
    return cfg


def parse_mqtt(table: Table) -> BrokerConfig:
    """The ``[mqtt]`` table."""
    base = Path(table.issues.file).resolve().parent if table.issues.file else Path.cwd()
    transport = table.get_enum("transport", Transport, Transport.TCP)
    tls_only = ("ca_file", "cert_file", "key_file", "tls_insecure")
    if transport is not Transport.TLS:
        for key in tls_only:
            if table.has(key):
                table.error(key, 'only valid with transport = "tls"')
    cert = table.get_str("cert_file", "")
    key = table.get_str("key_file", "")
    if bool(cert) != bool(key):
        table.error("key_file" if cert else "cert_file", "cert_file and key_file go together")
    password_env = table.get_str("password_env", "")
    password_file = table.get_str("password_file", "")
    if password_env and password_file:
        table.error("password_file", "give password_env or password_file, not both")
    group = table.get_str(
        "shared_group",
        "",
        nonempty=False,
        check=lambda g: (
            None if not g or _GROUP.match(g) else "letters, digits, '_', '.', '-' only (at most 64)"
        ),
    )
    topics = table.get_list(
        "topics",
        lambda v: _check_topic(v) if isinstance(v, str) else None,
        list(DEFAULT_TOPICS),
        expected="an MQTT topic filter (wildcards + and # allowed, no $share/ prefix)",
    )
    if table.has("topics") and not topics:
        table.error("topics", "expected at least one topic filter")
    lo = table.get_float("reconnect_min_s", 1.0, positive=True)
    hi = table.get_float("reconnect_max_s", 30.0, positive=True)
    if hi < lo:
        table.error("reconnect_max_s", f"must be >= reconnect_min_s ({lo})")
    default_port = 8883 if transport is Transport.TLS else 1883
    cfg = BrokerConfig(
        host=table.get_str("host"),
        port=table.get_int("port", default_port, min=1, max=65535),
        transport=transport,
        ca_file=_path(base, table.get_str("ca_file", "")),
        cert_file=_path(base, cert),
        key_file=_path(base, key),
        tls_insecure=table.get_bool("tls_insecure", False),
        username=table.get_str("username", ""),
        password_env=password_env,
        password_file=_path(base, password_file),
        client_id=table.get_str(
            "client_id",
            check=lambda c: None if len(c) <= 64 else "at most 64 characters",
        ),
        session_expiry_s=table.get_int("session_expiry_s", 86400, min=60, max=4294967294),
        keepalive_s=table.get_int("keepalive_s", 30, min=5, max=65535),
        shared_group=group,
        topics=tuple(topics),
        receive_maximum=table.get_int("receive_maximum", 1000, min=1, max=65535),
        reconnect_min_s=lo,
        reconnect_max_s=hi,
    )
    table.finish()
    return cfg


def parse_batch(table: Table | None) -> BatchConfig:
    """The optional ``[batch]`` table."""
    if table is None:
        return BatchConfig()
    cfg = BatchConfig(
        max_messages=table.get_int("max_messages", 500, min=1, max=100_000),
        max_wait_ms=table.get_int("max_wait_ms", 20, min=0, max=60_000),
        heartbeat_s=table.get_float("heartbeat_s", 10.0, positive=True),
    )
    table.finish()
    return cfg


def parse_evidence(table: Table | None) -> EvidenceConfig:
    """The optional ``[evidence]`` table: ``[evidence.trust]`` maps agent ids to anchors."""
    if table is None:
        return EvidenceConfig()
    base = Path(table.issues.file).resolve().parent if table.issues.file else Path.cwd()
    fingerprints: dict[str, tuple[str, ...]] = {}
    key_files: dict[str, tuple[Path, ...]] = {}
    interval = table.get_float("verify_interval_s", 0.0, min=0.0)
    trust = table.table("trust")
    if trust is not None:
        for agent in trust.key_names():
            anchors = trust.get_list(
                agent,
                lambda v: v if isinstance(v, str) and _anchor(v) else None,
                expected="a key fingerprint (SHA256:...) or a public key file ending in .pem",
            )
            if trust.has(agent) and not anchors and isinstance(trust.get_raw(agent), list):
                trust.error(agent, "expected at least one fingerprint or .pem file")
            fps = tuple(f for a in anchors if (f := parse_fingerprint(a)) is not None)
            pems = tuple(base / a for a in anchors if parse_fingerprint(a) is None)
            if fps:
                fingerprints[agent] = fps
            if pems:
                key_files[agent] = pems
        trust.finish()
    table.finish()
    return EvidenceConfig(
        fingerprints=fingerprints, key_files=key_files, verify_interval_s=interval
    )


def _anchor(text: str) -> bool:
    return parse_fingerprint(text) is not None or text.endswith(".pem")


def load(path: str | Path) -> CollectorConfig:
    """Read and check a collector TOML file (raises ConfigError with every problem)."""
    issues = Issues(str(path))
    data = load_toml(path, issues)
    issues.raise_if_any()
    root = Table(data, "", issues)
    database = root.table("database", required=True)
    mqtt = root.table("mqtt", required=True)
    batch = parse_batch(root.table("batch"))
    evidence = parse_evidence(root.table("evidence"))
    db_cfg = parse_database(database) if database is not None else None
    mqtt_cfg = parse_mqtt(mqtt) if mqtt is not None else None
    root.finish()
    issues.raise_if_any()
    if db_cfg is None or mqtt_cfg is None:  # pragma: no cover - raise_if_any raised
        raise ConfigError(issues.items)
    return CollectorConfig(
        database=db_cfg, mqtt=mqtt_cfg, batch=batch, evidence=evidence, source=str(path)
    )


class SecretError(Exception):
    """A password named in the config could not be read (message names the key, not the value)."""


def read_secret(env: str, file: Path | None, key: str) -> str | None:
    """The password from an environment variable or a file; None when neither is configured."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise SecretError(f"environment variable {env} ({key}_env) is not set")
        return value
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretError(f"{key}_file {file}: {exc.strerror or exc}") from None
    return None
