"""``[mqtt]`` parsing: defaults, every error named by key path, secrets kept out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_agent.configkit import Issues, Table
from edge_agent.errors import ConfigError
from edge_agent.uplink import (
    DrainOrder,
    MqttConfig,
    MqttProtocol,
    SessionMode,
    Transport,
    parse_mqtt,
)


def parse(data: dict[str, Any], base: Path = Path("/etc/edge-agent")) -> MqttConfig:
    issues = Issues("agent.toml")
    config = parse_mqtt(Table(data, "mqtt", issues), base_dir=base)
    issues.raise_if_any()
    return config


def errors(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse(data)
    return str(info.value)


def test_absent_section_gives_defaults() -> None:
    """No [mqtt] section means a plain-TCP v5 persistent session on localhost."""
    config = parse_mqtt(None, base_dir=Path("."))
    assert config.protocol is MqttProtocol.V5
    assert config.session is SessionMode.PERSISTENT
    assert config.port == 1883
    assert config.drain_order is DrainOrder.OLDEST_FIRST


def test_full_tls_section() -> None:
    """TLS keys resolve relative paths against the config directory; port defaults to 8883."""
    config = parse(
        {
            "host": "broker.example",
            "transport": "tls",
            "protocol": "3.1.1",
            "ca_file": "certs/ca.pem",
            "cert_file": "/abs/client.pem",
            "key_file": "certs/client.key",
            "username": "edge",
            "password_env": "MQTT_PASSWORD",
            "drain_order": "live_first",
            "topics": {"health": "{prefix}/diag"},
        }
    )
    assert config.transport is Transport.TLS
    assert config.port == 8883
    assert config.ca_file == Path("/etc/edge-agent/certs/ca.pem")
    assert config.cert_file == Path("/abs/client.pem")
    assert config.topics["health"] == "{prefix}/diag"
    assert config.topics["kpi"] == "{prefix}/{machine}/kpi/{window_kind}"


def test_every_error_is_reported_with_its_key_path() -> None:
    """Bad values, unknown keys and invalid templates are all reported at once."""
    text = errors(
        {
            "port": 0,
            "protocol": "4",
            "ca_file": "ca.pem",
            "colour": "blue",
            "topics": {"kpi": "{prefix}/+/kpi", "stop": "{prefix}/{oops}", "extra": "x"},
        }
    )
    for fragment in (
        "mqtt.port",
        "mqtt.protocol",
        'mqtt.ca_file: only valid with transport = "tls"',
        "mqtt.colour: unknown key",
        "mqtt.topics.kpi",
        "mqtt.topics.stop: unknown placeholder(s) {oops}",
        "mqtt.topics.extra: unknown key",
    ):
        assert fragment in text


def test_password_needs_username_and_one_source() -> None:
    """A password source requires a username, and env and file are mutually exclusive."""
    text = errors({"password_env": "X", "password_file": "pw"})
    assert "mqtt.username" in text
    assert "mqtt.password_file: set either" in text


def test_config_never_holds_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the variable name is stored: repr(config) cannot leak the secret."""
    monkeypatch.setenv("MQTT_PW_TEST", "s3cr3t-value")
    config = parse({"username": "u", "password_env": "MQTT_PW_TEST"})
    assert "s3cr3t-value" not in repr(config)


def test_connect_errors_are_described_for_operators(tmp_path: Path) -> None:
    """Connect failures become one-line messages naming the missing file or variable."""
    import ssl

    from edge_agent.errors import UplinkError
    from edge_agent.uplink.client import describe_error, read_password

    missing = FileNotFoundError(2, "No such file or directory", str(tmp_path / "ca.pem"))
    assert (
        describe_error(missing)
        == f"FileNotFoundError: No such file or directory: {tmp_path / 'ca.pem'}"
    )
    assert describe_error(ConnectionRefusedError()) == "connection refused"
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert describe_error(verify).startswith("TLS certificate verification failed")
    with pytest.raises(UplinkError, match="EDGE_UNSET_VAR"):
        read_password(MqttConfig(username="u", password_env="EDGE_UNSET_VAR"))  # noqa: S106
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    assert read_password(MqttConfig(username="u", password_file=pw)) == "secret"
