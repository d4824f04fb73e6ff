"""Config parsing: typed results and error messages that name the key path and the expectation."""

from __future__ import annotations

from typing import Any

from drivers.modbus.codec import DataType, WordOrder
from drivers.modbus.config import Addressing, ModbusTable, Parity, SerialTransport, TcpTransport
from tests.drivers.modbus.conftest import config_issues, make_device


def base(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "protocol": "modbus_tcp",
        "endpoint": "127.0.0.1:5020",
        "unit_id": 1,
        "addressing": "zero",
        "tags": {
            "good": {"table": "holding", "address": 10, "type": "uint32", "word_order": "CDAB"}
        },
    }
    data.update(over)
    return data


def test_tcp_device_parses_to_typed_frozen_config() -> None:
    """The documented sample parses into typed values with defaults filled in."""
    dev = make_device(**base())
    assert dev.transport == TcpTransport(host="127.0.0.1", port=5020)
    assert dev.addressing is Addressing.ZERO
    assert dev.tag_names == ("good",)
    tag = dev.tags[0]
    assert (tag.table, tag.address, tag.dtype, tag.word_order) == (
        ModbusTable.HOLDING,
        10,
        DataType.UINT32,
        WordOrder.CDAB,
    )
    assert tag.interval_ms == 1000
    assert (dev.timeout_ms, dev.retries, dev.max_gap) == (1000, 0, 16)


def test_one_based_addressing_shifts_to_wire_address() -> None:
    """With addressing = "one", config address 1 is wire address 0."""
    dev = make_device(**base(addressing="one", tags={"a": {"table": "input", "address": 1}}))
    assert (dev.tags[0].config_address, dev.tags[0].address) == (1, 0)
    issues = config_issues(base(addressing="one", tags={"a": {"table": "input", "address": 0}}))
    assert issues == [
        "test.toml: devices.m1.tags.a.address:"
        " expected an integer from 1 to 65536, got an integer 0"
    ]


def test_ipv6_endpoint_and_rtu_serial_settings() -> None:
    """IPv6 endpoints parse; RTU takes port settings and a 3.5-character inter-frame delay."""
    dev = make_device(**base(endpoint="[::1]:502"))
    assert dev.transport == TcpTransport(host="::1", port=502)
    assert dev.link_key == "tcp://[::1]:502"
    rtu = base(protocol="modbus_rtu", serial_port="/dev/ttyUSB0", baudrate=9600, parity="E")
    del rtu["endpoint"]
    dev = make_device(**rtu)
    assert isinstance(dev.transport, SerialTransport)
    assert dev.transport.parity is Parity.EVEN
    # 11 bits per character at 9600 baud: 3.5 * 11 / 9600 s = 4.01 ms.
    assert abs(dev.transport.inter_frame_delay_ms - 4.0104) < 0.001


def test_addressing_is_required() -> None:
    """Omitting addressing is an error: the off-by-one must be a conscious choice."""
    data = base()
    del data["addressing"]
    assert config_issues(data) == [
        "test.toml: devices.m1.addressing: missing, expected one of 'zero', 'one'"
    ]


def test_errors_name_key_path_and_expectation() -> None:
    """Bad values, a bit out of range, a string without length and unknown keys are all reported."""
    issues = config_issues(
        base(
            endpoint="nohost",
            colour="red",
            tags={
                "good": {"table": "holding", "address": "x"},
                "flag": {"table": "holding", "address": 1, "type": "bit", "bit": 16},
                "name": {"table": "holding", "address": 2, "type": "string"},
                "coil": {"table": "coil", "address": 3, "type": "float32"},
                "typo": {"table": "holding", "address": 4, "scael": 2},
            },
        )
    )
    assert (
        "test.toml: devices.m1.tags.good.address:"
        " expected an integer from 0 to 65535, got a string 'x'" in issues
    )
    assert (
        "test.toml: devices.m1.tags.flag.bit: expected an integer from 0 to 15, got an integer 16"
        in issues
    )
    assert (
        "test.toml: devices.m1.tags.name.length: missing, expected an integer from 1 to 250"
        in issues
    )
    assert (
        "test.toml: devices.m1.tags.coil.type: expected 'bool' for table 'coil', got 'float32'"
        in issues
    )
    assert "test.toml: devices.m1.tags.typo.scael: unknown key, did you mean 'scale'?" in issues
    assert "test.toml: devices.m1.colour: unknown key" in issues
    assert any(i.startswith("test.toml: devices.m1.endpoint: expected 'host:port'") for i in issues)


def test_a_tag_that_cannot_fit_one_request_is_rejected() -> None:
    """A string wider than max_block_registers, or one running past 65535, is a config error."""
    issues = config_issues(
        base(
            max_block_registers=10,
            tags={
                "s": {"table": "holding", "address": 0, "type": "string", "length": 40},
                "end": {"table": "holding", "address": 65535, "type": "float32"},
            },
        )
    )
    assert any("devices.m1.tags.s.length: a 20-register string cannot fit" in i for i in issues)
    assert any(
        "devices.m1.tags.end.address: a float32 at 65535 ends past the last address" in i
        for i in issues
    )


def test_device_without_tags_is_rejected() -> None:
    """A device with no tags is an error, not a silently idle device."""
    data = base()
    del data["tags"]
    assert config_issues(data) == [
        "test.toml: devices.m1.tags: missing, expected at least one [devices.m1.tags.<tag>] table"
    ]


def test_documented_sample_parses_without_issues() -> None:
    """The sample block in docs/modbus.md parses cleanly (the docs cannot drift from the code)."""
    import re
    from pathlib import Path

    import tomli

    from drivers.modbus.config import parse_device
    from edge_agent.configkit import Issues, Table

    text = (Path(__file__).resolve().parents[3] / "docs" / "modbus.md").read_text(encoding="utf-8")
    match = re.search(r"```toml\n(.*?)```", text, re.S)
    assert match is not None
    issues = Issues("docs/modbus.md")
    devices = [
        parse_device(name, Table(data, f"devices.{name}", issues))
        for name, data in tomli.loads(match.group(1))["devices"].items()
    ]
    assert [str(i) for i in issues.items] == []
    assert [d.name for d in devices] == ["m1", "press2"]
    assert devices[1].tags[0].address == 0  # one-based address 1


def test_devices_sharing_a_serial_port_must_agree_on_line_settings() -> None:
    """Two devices on one serial port with different baud rates are a config error, not a crash."""
    from drivers.modbus import SPECS
    from drivers.modbus.config import check_shared_links

    rtu = {"protocol": "modbus_rtu", "serial_port": "/dev/ttyUSB0", "addressing": "zero"}
    tags = {"a": {"table": "holding", "address": 0}}
    a = make_device("a", unit_id=1, tags=tags, **rtu)
    b = make_device("b", unit_id=2, tags=tags, baudrate=9600, **rtu)
    c = make_device("c", unit_id=3, tags=tags, **rtu)
    assert check_shared_links([a, c]) == []
    problems = check_shared_links([a, b, c])
    assert [p for p, _ in problems] == ["devices.b.serial_port"]
    assert "shares rtu:///dev/ttyUSB0 with devices.a" in problems[0][1]
    assert SPECS[1].check_devices is check_shared_links


def test_equal_tags_of_several_devices_are_one_object() -> None:
    """Devices of one model share their tag objects; a tag differing in anything does not.

    Floats are told apart by their bits: an offset of -0.0 is not the tag with 0.0.
    """
    tags = {"speed": {"table": "holding", "address": 3, "scale": 0.1, "offset": 0.0}}
    data = {"protocol": "modbus_tcp", "endpoint": "127.0.0.1:502", "addressing": "zero"}
    a = make_device("a", **data, unit_id=1, tags=tags)
    b = make_device("b", **data, unit_id=2, tags=tags)
    assert a.tags[0] is b.tags[0]
    other = {"speed": {**tags["speed"], "offset": -0.0}}
    c = make_device("c", **data, unit_id=3, tags=other)
    assert c.tags[0] == a.tags[0]  # equal as values (-0.0 == 0.0) ...
    assert c.tags[0] is not a.tags[0]  # ... but not merged
