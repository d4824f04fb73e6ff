"""Unit tests of OPC-UA device config parsing through configkit (no I/O)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomli

from drivers.opcua import describe_plan, group_devices
from drivers.opcua.browse import tag_name
from drivers.opcua.config import (
    DeadbandType,
    Identity,
    Mode,
    OpcuaDevice,
    SecurityMode,
    SecurityPolicy,
    bind_state_dir,
    parse_device,
)
from drivers.opcua.nodes import IdType
from edge_agent.configkit import Issues, Table

SAMPLE = """
[devices.line1]
protocol = "opcua"
endpoint = "opc.tcp://127.0.0.1:4840/edge-sim/"
mode = "subscribe"
interval_ms = 1000
security_policy = "Basic256Sha256"
security_mode = "SignAndEncrypt"
identity = "username"
username = "operator"
password_env = "EDGE_OPCUA_PASSWORD"
timeout_ms = 4000
watchdog_s = 30

[devices.line1.tags.good]
node = "nsu=urn:edge-agent:simulator;s=M1.GoodCount"

[devices.line1.tags.temp]
browse_path = "Objects/M1/Temperature"
sampling_interval_ms = 500
queue_size = 1
filter_deadband = 0.5
filter_deadband_type = "absolute"
"""


def _parse(doc: dict[str, Any], name: str = "line1") -> tuple[OpcuaDevice, list[str]]:
    issues = Issues("agent.toml")
    device = parse_device(name, Table(doc["devices"][name], f"devices.{name}", issues))
    return device, [str(i) for i in issues.items]


def _with(**changes: Any) -> dict[str, Any]:
    doc = tomli.loads(SAMPLE)
    dev = doc["devices"]["line1"]
    for key, value in changes.items():
        if value is None:
            dev.pop(key, None)
        else:
            dev[key] = value
    return doc


def test_sample_parses_into_typed_frozen_config() -> None:
    """The documented sample parses into enums, NodeRefs and browse paths without issues."""
    device, problems = _parse(tomli.loads(SAMPLE))
    assert problems == []
    assert device.mode is Mode.SUBSCRIBE
    assert device.security_policy is SecurityPolicy.BASIC256SHA256
    assert device.security_mode is SecurityMode.SIGN_AND_ENCRYPT
    assert device.identity is Identity.USERNAME
    assert device.tag_names == ("good", "temp")
    good, temp = device.tags
    assert good.node is not None
    assert good.node.id_type is IdType.STRING
    assert good.node.namespace_uri == "urn:edge-agent:simulator"
    assert temp.browse_path is not None
    assert str(temp.browse_path) == "Objects/M1/Temperature"
    assert (temp.sampling_interval_ms, temp.queue_size, temp.deadband) == (500.0, 1, 0.5)
    assert temp.deadband_type is DeadbandType.ABSOLUTE
    with pytest.raises(AttributeError):
        device.mode = Mode.POLL  # type: ignore[misc]


def test_docs_sample_block_parses() -> None:
    """The config block in docs/opcua.md (the README section) parses without issues."""
    text = (Path(__file__).parents[3] / "docs" / "opcua.md").read_text(encoding="utf-8")
    block = text.split("```toml", 1)[1].split("```", 1)[0]
    doc = tomli.loads(block)
    for name in doc["devices"]:
        _, problems = _parse(doc, name)
        assert problems == []


def test_state_dir_defaults_and_binding() -> None:
    """Security paths default below the state dir, which the loader binds from [agent]."""
    device, _ = _parse(tomli.loads(SAMPLE))
    bound = bind_state_dir([device], Path("/srv/agent"))[0]
    assert bound.resolved_trust_dir == Path("/srv/agent/opcua/trusted")
    assert bound.resolved_certificate == Path("/srv/agent/opcua/client-cert.der")
    assert bound.resolved_private_key == Path("/srv/agent/opcua/client-key.pem")


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({"endpoint": "http://x"}, "devices.line1.endpoint", "opc.tcp://"),
        ({"mode": "stream"}, "devices.line1.mode", "'subscribe', 'poll'"),
        ({"security_policy": "Basic128"}, "devices.line1.security_policy", "'Basic256Sha256'"),
        ({"security_mode": "None"}, "devices.line1.security_mode", "together with"),
        ({"password_env": None}, "devices.line1.password_env", "exactly one of"),
        ({"password_file": "/etc/p"}, "devices.line1.password_env", "exactly one of"),
        ({"identity": "anonymous"}, "devices.line1.identity", "'username' when"),
        ({"client_certificate": "/c.der"}, "devices.line1.client_certificate", "both"),
        ({"watchdog_s": 0.5}, "devices.line1.watchdog_s", "from 1.0 to"),
        ({"interval_ms": 5}, "devices.line1.interval_ms", "from 10 to"),
        ({"colour": "red"}, "devices.line1.colour", "unknown key"),
        ({"tags": {}}, "devices.line1.tags", "at least one tag"),
        ({"tags": None}, "devices.line1.tags", "missing"),
    ],
)
def test_device_errors_name_key_path_and_expectation(
    changes: dict[str, Any], path: str, fragment: str
) -> None:
    """Every invalid device key is reported with file, dotted key path and expectation."""
    _, problems = _parse(_with(**changes))
    assert any(p.startswith(f"agent.toml: {path}:") and fragment in p for p in problems), problems


@pytest.mark.parametrize(
    ("tag", "path", "fragment"),
    [
        ({"node": "ns=2;x=1"}, "tags.t.node", "expected a NodeId like"),
        ({"node": "ns=2;s=A", "browse_path": "Objects/A"}, "tags.t.node", "exactly one"),
        ({}, "tags.t.node", "exactly one"),
        ({"browse_path": "Objects//A"}, "tags.t.browse_path", "empty segment"),
        ({"node": "ns=2;s=A", "queue_size": 0}, "tags.t.queue_size", "from 1 to"),
        ({"node": "ns=2;s=A", "filter_deadband": -1}, "tags.t.filter_deadband", ">= 0.0"),
        (
            {"node": "ns=2;s=A", "filter_deadband": 150, "filter_deadband_type": "percent"},
            "tags.t.filter_deadband",
            "0 to 100",
        ),
        (
            {"node": "ns=2;s=A", "filter_deadband_type": "relative"},
            "tags.t.filter_deadband_type",
            "'absolute'",
        ),
        ({"node": "ns=2;s=A", "nodeid": "x"}, "tags.t.nodeid", "unknown key"),
    ],
)
def test_tag_errors_name_key_path(tag: dict[str, Any], path: str, fragment: str) -> None:
    """Tag problems name the tag's key path; node syntax is checked at load without I/O."""
    _, problems = _parse(_with(tags={"t": tag}))
    assert any(f"devices.line1.{path}:" in p and fragment in p for p in problems), problems


def test_all_errors_reported_at_once() -> None:
    """Several mistakes in one device are all reported, not just the first."""
    _, problems = _parse(
        _with(mode="x", endpoint="tcp://y", colour="red", tags={"t": {"node": "bad"}})
    )
    assert len(problems) >= 4


def test_devices_group_into_sessions_by_endpoint_and_security() -> None:
    """Devices share a session only with equal endpoint and security settings; plan lists them."""
    doc = tomli.loads(SAMPLE)
    base = dict(doc["devices"]["line1"])
    other = {**base, "identity": "anonymous"}
    other.pop("username")
    other.pop("password_env")
    doc["devices"]["line2"] = dict(base)
    doc["devices"]["line3"] = other
    devices = [_parse(doc, n)[0] for n in ("line1", "line2", "line3")]
    groups = group_devices(devices)
    assert [[d.name for d in g] for g in groups] == [["line1", "line2"], ["line3"]]
    plan = describe_plan(devices)
    assert (
        "session opc.tcp://127.0.0.1:4840/edge-sim/ security=Basic256Sha256/SignAndEncrypt" in plan
    )
    assert "temp: Objects/M1/Temperature sampling=500ms queue=1 deadband=0.5 absolute" in plan


def test_tag_names_are_config_safe() -> None:
    """Browse names become snake_case tag names that start with a letter."""
    assert [tag_name(n) for n in ("GoodCount", "Motor Speed (rpm)", "2ndShift", "ABC")] == [
        "good_count",
        "motor_speed_rpm",
        "t_2nd_shift",
        "abc",
    ]


def test_reconnect_keys_per_endpoint_default_from_the_interval_and_are_checked() -> None:
    """reconnect_min_s / reconnect_max_s: defaults 0.2 s and interval_ms; max >= min."""
    device, issues = _parse(_with())
    assert not issues
    assert (device.reconnect_min_s, device.reconnect_max_s) == (0.2, 1.0)
    device, issues = _parse(_with(reconnect_min_s=1, reconnect_max_s=8))
    assert not issues
    assert (device.reconnect_min_s, device.reconnect_max_s) == (1.0, 8.0)
    _device, issues = _parse(_with(reconnect_min_s=3, reconnect_max_s=2))
    assert issues == ["agent.toml: devices.line1.reconnect_max_s: must be >= reconnect_min_s (3)"]
    _device, issues = _parse(_with(reconnect_max_s=-1))
    assert len(issues) == 1
    assert "reconnect_max_s" in issues[0]


def test_a_tag_may_carry_its_engineering_unit() -> None:
    """An OPC-UA tag's unit is kept for telemetry, status.json and Sparkplug engUnit."""
    doc = _with()
    doc["devices"]["line1"]["tags"]["temp"]["unit"] = "°C"
    device, issues = _parse(doc)
    assert not issues
    assert {t.name: t.unit for t in device.tags} == {"good": "", "temp": "°C"}
