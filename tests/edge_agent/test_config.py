"""Tests for whole-file configuration loading and check-config."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config import load_config, load_config_compact
from edge_agent.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

GOOD = """
[agent]
id = "gw-1"
site = "plant-a"
state_dir = "state"

[mqtt]
host = "127.0.0.1"
port = 1883

[devices.press1]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:5020"
unit_id = 1
addressing = "zero"

[devices.press1.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.press1.tags.fault]
table = "holding"
address = 2
type = "uint16"

[devices.press1.tags.good]
table = "holding"
address = 4
type = "uint32"

[devices.press1.tags.total]
table = "holding"
address = 6
type = "uint32"

[machines.press1]
run = "press1.running"
fault = "press1.fault"
good = "press1.good"
total = "press1.total"

[machines.press1.kpi]
ideal_cycle_time_s = 2.0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_valid_file_loads_into_typed_objects(tmp_path: Path) -> None:
    """A valid file gives an AgentConfig with devices, machines and resolved state dir."""
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.agent.id == "gw-1"
    assert cfg.agent.state_dir == (tmp_path / "state").resolve()
    assert set(cfg.devices) == {"press1"}
    assert cfg.devices["press1"].tag_names == ("running", "fault", "good", "total")
    assert cfg.machines["press1"].refs == (
        "press1.running",
        "press1.fault",
        "press1.good",
        "press1.total",
    )


def test_three_mistakes_are_all_reported_with_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config prints every mistake with the file and dotted key path, and exits 2."""
    bad = (
        GOOD.replace('site = "plant-a"', 'site = "plant-a"\nsitee = "typo"')
        .replace("address = 2\n", 'address = "two"\n')
        .replace('good = "press1.good"', 'good = "press1.goood"')
    )
    path = write(tmp_path, bad)
    code = main(["check-config", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{path}: agent.sitee: unknown key" in err
    assert f"{path}: devices.press1.tags.fault.address: expected an integer" in err
    assert "'two'" in err
    assert (
        f"{path}: machines.press1: reads 'press1.goood' but device 'press1' has no tag 'goood'"
        in err
    )


def test_run_refuses_to_start_on_invalid_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`edge-agent run` with an invalid file exits 2 before starting anything."""
    path = write(tmp_path, GOOD.replace("[agent]", "[agentt]"))
    assert main(["run", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "agentt: unknown key" in err
    assert not (tmp_path / "state").exists()


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing file is reported as a config error naming the file."""
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "nope.toml: file not found" in str(info.value)


def test_invalid_toml_syntax_is_reported(tmp_path: Path) -> None:
    """A TOML syntax error names the file and the parser's position."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[agent\nid = 1"))
    assert "invalid TOML" in str(info.value)


def test_run_signal_forms(tmp_path: Path) -> None:
    """Run accepts a bit of a register and an expression; total accepts a sum of counters."""
    text = GOOD.replace(
        'run = "press1.running"', 'run = { expr = "press1.fault in [0, 1] and press1.running" }'
    )
    text = text.replace(
        'total = "press1.total"', 'total = { sum = ["press1.good", "press1.total"] }'
    )
    cfg = load_config(write(tmp_path, text))
    assert cfg.machines["press1"].refs[0] == "press1.fault"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_config_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every TOML file shipped in config/ is a valid agent configuration."""
    monkeypatch.setenv("EDGE_MQTT_PASSWORD", "not-a-real-secret")
    cfg = load_config(path)
    assert cfg.devices
    # The file itself: the examples name files of a real gateway (/etc/edge-agent/ca.crt).
    assert main(["check-config", "--no-environment", str(path)]) == 0


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_compact_load_gives_the_same_configuration(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's compacting load equals the plain load, section by section.

    Compiled machine expressions are functions (compared by identity): they are
    compared by their text, the rest by value.
    """
    monkeypatch.setenv("EDGE_MQTT_PASSWORD", "not-a-real-secret")
    plain, compact = load_config(path), load_config_compact(path)
    for f in dataclasses.fields(plain):
        a, b = getattr(plain, f.name), getattr(compact, f.name)
        if f.name == "machines":
            assert re.sub(" at 0x[0-9a-f]+", "", repr(a)) == re.sub(" at 0x[0-9a-f]+", "", repr(b))
        else:
            assert a == b, f.name


def test_config_dir_is_not_empty() -> None:
    """The example configurations exist (the parametrised test above is not silently empty)."""
    names = {p.name for p in CONFIG_DIR.glob("*.toml")}
    assert {"demo.toml", "agent.example.toml"} <= names
