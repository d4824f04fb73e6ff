"""[mqtt.sparkplug] validation and the metric catalog compiled from a configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tomli

from edge_agent.buffer.outbox import OutboxRow
from edge_agent.config import load_config
from edge_agent.configkit import Issues, Table
from edge_agent.errors import ConfigError
from edge_agent.uplink import parse_mqtt
from edge_agent.uplink.config import PayloadFormat, SessionMode
from edge_agent.uplink.sparkplug.catalog import DataType, DeviceKind, build_catalog
from edge_agent.uplink.sparkplug.rows import RowEncoder

EXAMPLE = Path(__file__).resolve().parents[4] / "config" / "sparkplug.example.toml"


def mqtt(text: str) -> tuple[Any, list[str]]:
    issues = Issues("test.toml")
    root = Table(tomli.loads(text), "", issues)
    config = parse_mqtt(root.table("mqtt"), base_dir=Path("."))
    return config, [f"{i.path}: {i.message}" for i in issues.items]


def test_sparkplug_mode_defaults_to_a_clean_session() -> None:
    """Payload = "sparkplug_b" with a group id is valid; the session defaults to clean."""
    config, problems = mqtt('[mqtt]\npayload = "sparkplug_b"\n[mqtt.sparkplug]\ngroup_id = "g1"\n')
    assert problems == []
    assert config.payload is PayloadFormat.SPARKPLUG_B
    assert config.session is SessionMode.CLEAN
    assert config.sparkplug.group_id == "g1"
    assert config.sparkplug.node_id("agent-7") == "agent-7"
    assert config.sparkplug.machine_device("press") == "press-machine"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('payload = "sparkplug_b"', "mqtt.sparkplug: missing"),
        ('payload = "sparkplug_b"\n[mqtt.sparkplug]', "mqtt.sparkplug.group_id: missing"),
        (
            'payload = "sparkplug_b"\nsession = "persistent"\n[mqtt.sparkplug]\ngroup_id = "g"',
            'mqtt.session: must be "clean"',
        ),
        ('payload = "sparkplug_b"\n[mqtt.sparkplug]\ngroup_id = "a/b"', "mqtt.sparkplug.group_id"),
        ('payload = "sparkplug_b"\n[mqtt.sparkplug]\ngroup_id = "g+"', "mqtt.sparkplug.group_id"),
        (
            'payload = "sparkplug_b"\n[mqtt.sparkplug]\ngroup_id = "g"\nedge_node_id = "#"',
            "mqtt.sparkplug.edge_node_id",
        ),
        (
            'payload = "sparkplug_b"\n[mqtt.sparkplug]\ngroup_id = "g"\nmachine_device_id = "x"',
            "{machine}",
        ),
        (
            'payload = "sparkplug_b"\n[mqtt.sparkplug]\ngroup_id = "g"\nqos = 2',
            "mqtt.sparkplug.qos",
        ),
        ('payload = "sparkplug_b"\n[mqtt.sparkplug]\ngroup_id = "g"\nbdseq = 1', "unknown key"),
        ('[mqtt.sparkplug]\ngroup_id = "g"', 'only valid with payload = "sparkplug_b"'),
        ('payload = "protobuf"', "mqtt.payload"),
    ],
)
def test_invalid_sparkplug_settings_name_key_and_expectation(body: str, problem: str) -> None:
    """Each mistake is reported with its dotted key path and what was expected."""
    _config, problems = mqtt("[mqtt]\n" + body + "\n")
    assert any(problem in p for p in problems), problems


def test_a_machine_device_id_clashing_with_a_device_is_a_config_error(tmp_path: Path) -> None:
    """Sparkplug device ids must be unique in the node (ignoring case): the loader says so."""
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        '# machine_device_id = "{machine}-machine"', 'machine_device_id = "{machine}"'
    )
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "mqtt.sparkplug.machine_device_id" in str(err.value)
    assert "clashes with device 'press1'" in str(err.value)


def test_catalog_of_the_example() -> None:
    """The example's catalog: typed tag metrics with units, aggregate stats, machine metrics."""
    config = load_config(EXAMPLE)
    assert config.mqtt.sparkplug is not None
    catalog = build_catalog(config, config.mqtt.sparkplug, version="1.2.3")
    assert list(catalog.devices) == ["press1", "press1-machine"]
    press = catalog.plc["press1"]
    assert press.kind is DeviceKind.PLC
    # good/total are "none": they feed the KPIs but are not Sparkplug metrics.
    assert set(press.metrics) == {
        "running",
        "fault_code",
        "speed",
        *(f"temperature/{s}" for s in ("min", "max", "mean", "last", "count", "good_ratio")),
    }
    types = {name: m.datatype for name, m in press.metrics.items()}
    assert types["running"] is DataType.BOOLEAN
    assert types["fault_code"] is DataType.UINT16
    assert types["speed"] is DataType.FLOAT
    assert types["temperature/last"] is DataType.DOUBLE
    assert types["temperature/count"] is DataType.INT64
    assert press.metrics["speed"].unit == "parts/min"
    assert press.metrics["temperature/mean"].unit == "°C"
    assert press.metrics["temperature/count"].unit == ""
    assert press.flush_s == pytest.approx(1.0 + 60 + 0.5)
    machine = catalog.machines["press1"]
    assert machine.kind is DeviceKind.MACHINE
    assert machine.metrics["KPI/shift/oee"].datatype is DataType.DOUBLE
    assert machine.metrics["KPI/day/start"].datatype is DataType.DATETIME
    assert machine.metrics["KPI/day/failures"].datatype is DataType.INT64
    assert machine.metrics["Stop/category"].datatype is DataType.STRING
    assert "KPI/hour/oee" not in machine.metrics  # only the configured windows
    aliases = [m.alias for m in catalog.node_metrics.values()] + [
        m.alias for d in catalog.devices.values() for m in d.metrics.values()
    ]
    assert len(aliases) == len(set(aliases))
    assert min(aliases) >= 1
    assert catalog.info["Properties/version"] == "1.2.3"
    again = build_catalog(config, config.mqtt.sparkplug, version="1.2.3")
    assert again.signature() == catalog.signature(), "aliases are stable for one config"


def test_scaled_modbus_values_are_doubles(tmp_path: Path) -> None:
    """A tag with scale/offset publishes floats: its metric is a Double, not its register type."""
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        'type = "uint16"\n', 'type = "uint16"\nscale = 0.1\n', 1
    )
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert config.mqtt.sparkplug is not None
    catalog = build_catalog(config, config.mqtt.sparkplug, version="x")
    assert catalog.plc["press1"].metrics["fault_code"].datatype is DataType.DOUBLE


CONTRACT = """
[contracts.press-sla]
machines = ["press1"]
timezone = "UTC"
calendar = "24/7"

[contracts.press-sla.terms.availability]
kpi = "sla_availability"
target = 0.98
minimum = 0.95

[contracts.press-sla.terms.response]
kpi = "response_time_s"
statistic = "max"
to = "acknowledged"
target = 14400
"""


def _with_contract(tmp_path: Path, extra: str = "", name: str = "press-sla") -> Any:
    path = tmp_path / "agent.toml"
    text = EXAMPLE.read_text(encoding="utf-8") + CONTRACT.replace("press-sla", name)
    path.write_text(text.replace("[mqtt.sparkplug]\n", "[mqtt.sparkplug]\n" + extra, 1))
    return load_config(path)


def test_a_contract_is_a_device_with_status_term_level_and_alert_metrics(tmp_path: Path) -> None:
    """Each contract is its own device; its terms and levels are folders with their units."""
    config = _with_contract(tmp_path)
    assert config.mqtt.sparkplug is not None
    catalog = build_catalog(config, config.mqtt.sparkplug, version="x")
    assert list(catalog.devices) == ["press1", "press1-machine", "press-sla-contract"]
    spec = catalog.contracts["press-sla"]
    assert spec.kind is DeviceKind.CONTRACT
    metrics = spec.metrics
    assert metrics["Status/at"].datatype is DataType.DATETIME
    assert metrics["Term/availability/so_far"].datatype is DataType.DOUBLE
    assert metrics["Term/availability/minimum/budget"].unit == "s"
    assert metrics["Term/response/target/budget"].unit == "responses"
    assert metrics["Term/response/so_far"].unit == "s"
    assert "Term/response/minimum/state" not in metrics  # no minimum level configured
    assert metrics["Alert/budget"].datatype is DataType.DOUBLE


def test_contract_rows_encode_to_the_contract_device(tmp_path: Path) -> None:
    """Status and alert records (as the contract desk shapes them) become their metrics."""
    config = _with_contract(tmp_path)
    assert config.mqtt.sparkplug is not None
    encoder = RowEncoder(build_catalog(config, config.mqtt.sparkplug, version="x"))
    status = {
        "contract": "press-sla",
        "period": "month:2026-12",
        "at": "2026-12-04T10:00:00Z",
        "final": False,
        "flags": ["clock_unsynced"],
        "terms": [
            {
                "term": "availability",
                "state": "at_risk",
                "so_far": 0.97,
                "levels": [
                    {"level": "minimum", "threshold": 0.95, "state": "on_track", "budget": 60.5}
                ],
            }
        ],
    }
    row = OutboxRow(1, "contract", 2, "t", json.dumps(status), 1.0, False)
    encoded = encoder.encode(row, historical=False)
    assert encoded is not None
    assert encoded.device is not None
    assert encoded.device.device_id == "press-sla-contract"
    by_alias = {m.alias: m for m in encoded.payload.metrics}
    named = {
        m.name: by_alias[m.alias] for m in encoded.device.metrics.values() if m.alias in by_alias
    }
    assert named["Status/period"].string_value == "month:2026-12"
    assert named["Status/flags"].string_value == "clock_unsynced"
    assert named["Term/availability/state"].string_value == "at_risk"
    assert named["Term/availability/minimum/budget"].double_value == 60.5
    assert named["Status/revision"].is_null
    alert = {"contract": "press-sla", "alert_id": "a1", "term": "availability", "budget": -3.0}
    row = OutboxRow(2, "contract_alert", 1, "t", json.dumps(alert), 1.0, False)
    encoded = encoder.encode(row, historical=True)
    assert encoded is not None
    assert all(m.is_historical for m in encoded.payload.metrics)
    other = OutboxRow(3, "contract", 2, "t", json.dumps({**status, "contract": "gone"}), 1.0, False)
    assert encoder.encode(other, historical=False) is None
    assert encoder.stats.skipped_rows == {"contract": 1}


def test_a_contract_device_id_clash_is_a_config_error(tmp_path: Path) -> None:
    """A contract template that makes a contract's id equal a device's is refused at load."""
    with pytest.raises(ConfigError) as err:
        _with_contract(
            tmp_path, 'contract_device_id = "{contract}"\nmachine_device_id = "press-sla"\n'
        )
    assert "mqtt.sparkplug" in str(err.value)
