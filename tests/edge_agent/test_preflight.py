"""check-config catches what would fail at start; run refuses the same things, naming them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config import load_config
from edge_agent.configkit import Issues, load_toml
from edge_agent.errors import ConfigError
from edge_agent.preflight import dir_problem, host_problem, placeholder_problem, preflight
from edge_agent.uplink import MqttConfig, Transport

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "agent.example.toml"

BASE = """\
[agent]
id = "gw-1"
site = "plant-a"
state_dir = "{state}"

[mqtt]
host = "{host}"
{mqtt_extra}

[devices.press1]
protocol = "modbus_tcp"
endpoint = "{endpoint}"
unit_id = 1
addressing = "zero"

[devices.press1.tags.running]
table = "coil"
address = 0
type = "bool"
"""


def write(tmp_path: Path, **kw: str) -> Path:
    values = {
        "state": str(tmp_path / "state"),
        "host": "127.0.0.1",
        "mqtt_extra": "",
        "endpoint": "127.0.0.1:5020",
    }
    values.update(kw)
    path = tmp_path / "agent.toml"
    path.write_text(BASE.format(**values))
    return path


def test_check_config_reports_what_would_fail_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing CA file, an unset password variable, a bad host and a bad endpoint: exit 2."""
    monkeypatch.delenv("EDGE_TEST_MQTT_PW", raising=False)
    ca = tmp_path / "missing-ca.crt"
    path = write(
        tmp_path,
        host="not a host!",
        endpoint="999.1.1.1:502",
        mqtt_extra=f'transport = "tls"\nca_file = "{ca}"\nusername = "u"\n'
        'password_env = "EDGE_TEST_MQTT_PW"',
    )
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"mqtt.ca_file: {ca} does not exist" in err
    assert "mqtt.password_env: environment variable EDGE_TEST_MQTT_PW is not set" in err
    assert "mqtt.host: 'not a host!' is not a valid host name" in err
    assert "devices.press1.endpoint: '999.1.1.1' is not a valid IPv4 address" in err
    assert ": OK" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("{file}/state", "cannot be created: {file} is a file"),
        ("{file}", "{file} is a file, expected a directory"),
    ],
)
def test_state_dir_that_cannot_be_created_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], state: str, expected: str
) -> None:
    """check-config and run both refuse a state_dir that cannot be a directory (exit 2)."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    path = write(tmp_path, state=state.format(file=a_file))
    assert main(["check-config", str(path)]) == 2
    assert expected.format(file=a_file) in capsys.readouterr().err
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "agent.state_dir: " in err
    assert expected.format(file=a_file) in err
    assert "Traceback" not in err


def test_placeholders_are_warnings_and_strict_makes_them_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The example's documentation addresses warn; --strict turns the warnings into exit 2."""
    assert main(["check-config", "--no-environment", str(EXAMPLE)]) == 0
    captured = capsys.readouterr()
    assert "OK (2 warning(s))" in captured.out
    assert "warning: mqtt.host: 'broker.example.net' is a placeholder" in captured.err
    assert "warning: devices.press1.endpoint: '192.0.2.10' is a placeholder" in captured.err
    assert main(["check-config", "--no-environment", "--strict", str(EXAMPLE)]) == 2
    assert "INVALID (--strict), 2 problem(s)" in capsys.readouterr().err


def test_example_as_installed_is_refused_on_this_machine(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unedited example names the files and variables this machine lacks."""
    monkeypatch.delenv("EDGE_MQTT_PASSWORD", raising=False)
    if Path("/etc/edge-agent/ca.crt").exists():
        pytest.skip("this machine has an edge-agent CA file installed")
    assert main(["check-config", str(EXAMPLE)]) == 2
    err = capsys.readouterr().err
    assert "mqtt.ca_file: /etc/edge-agent/ca.crt does not exist" in err
    assert "EDGE_MQTT_PASSWORD is not set" in err


def test_run_refuses_a_missing_ca_file_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` exits 2 before starting anything, naming the key and the file."""
    ca = tmp_path / "ca.crt"
    path = write(tmp_path, mqtt_extra=f'transport = "tls"\nca_file = "{ca}"')
    assert main(["run", str(path)]) == 2
    assert f"mqtt.ca_file: {ca} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


async def test_uplink_names_a_ca_file_that_went_missing(tmp_path: Path) -> None:
    """At run time (file removed after start), the uplink's error names the file, not ENOENT."""
    from tests.edge_agent.uplink.harness import running_agent

    ca = tmp_path / "gone-ca.crt"
    config = MqttConfig(
        host="127.0.0.1", port=1, transport=Transport.TLS, ca_file=ca, reconnect_min_s=0.1
    )
    async with running_agent(tmp_path / "b.db", config) as agent:
        assert await agent.wait(lambda: agent.uplink.last_error is not None, 5)
        await asyncio.sleep(0)
        assert agent.uplink.last_error == f"mqtt.ca_file: {ca} does not exist"


def test_environment_checks_can_be_skipped(tmp_path: Path) -> None:
    """--no-environment checks a file meant for another gateway: files and variables ignored."""
    path = write(
        tmp_path,
        mqtt_extra='transport = "tls"\nca_file = "/nowhere/ca.crt"\nusername = "u"\n'
        'password_env = "EDGE_TEST_UNSET_VARIABLE"',
    )
    config = load_config(path)
    assert [f.path for f in preflight(config)] == ["mqtt.password_env", "mqtt.ca_file"]
    assert preflight(config, environment=False) == []


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("10.0.0.5", True),
        ("plc-3.line1.local", True),
        ("::1", True),
        ("broker_1", True),
        ("localhost.", True),
        ("999.1.1.1", False),
        ("10.0.0", False),
        ("not a host!", False),
        ("-bad.example", False),
        ("fe80::zz", False),
        ("", False),
    ],
)
def test_host_syntax(host: str, ok: bool) -> None:
    """Host names and addresses are checked by syntax only (no DNS)."""
    assert (host_problem(host) is None) is ok


@pytest.mark.parametrize(
    ("host", "placeholder"),
    [
        ("192.0.2.10", True),
        ("198.51.100.7", True),
        ("203.0.113.1", True),
        ("2001:db8::1", True),
        ("broker.example.net", True),
        ("example.com", True),
        ("plc.invalid", True),
        ("10.0.0.5", False),
        ("127.0.0.1", False),
        ("broker.example-corp.net", False),
    ],
)
def test_placeholder_addresses(host: str, placeholder: bool) -> None:
    """Documentation ranges (RFC 5737/3849) and example names (RFC 2606) are placeholders."""
    assert (placeholder_problem(host) is not None) is placeholder


def test_dir_problem(tmp_path: Path) -> None:
    """A directory to create is judged by its nearest existing ancestor."""
    assert dir_problem(tmp_path / "a" / "b") is None
    (tmp_path / "f").write_text("")
    assert dir_problem(tmp_path / "f" / "b") == f"{tmp_path / 'f' / 'b'} cannot be created: " + (
        f"{tmp_path / 'f'} is a file"
    )
    assert (
        dir_problem(tmp_path / "missing", must_exist=True)
        == f"{tmp_path / 'missing'} does not exist"
    )


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    """A file saved by a Windows editor with a byte order mark loads like any other."""
    path = write(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_config(path).agent.id == "gw-1"


def test_typo_gets_did_you_mean(tmp_path: Path) -> None:
    """An unknown key close to a known one suggests it."""
    path = write(tmp_path)
    path.write_text(path.read_text().replace("unit_id = 1", "unit_id = 1\nintervall_ms = 500"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(i) for i in info.value.issues] == [
        f"{path}: devices.press1.intervall_ms: unknown key, did you mean 'interval_ms'?"
    ]


def test_unknown_key_far_from_any_gets_no_guess(tmp_path: Path) -> None:
    """A key like nothing known is just unknown."""
    path = write(tmp_path)
    path.write_text(path.read_text().replace("unit_id = 1", "unit_id = 1\ncolour = 'red'"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [i.message for i in info.value.issues] == ["unknown key"]


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        (
            'table = "holding"\naddress = 1\ntype = "u32"',
            ["devices.press1.tags.running.type: expected one of 'bool', 'bit', 'int16'"],
        ),
        (
            'table = "holdings"\naddress = 1\ntype = "uint16"',
            ["devices.press1.tags.running.table: expected one of 'coil', 'discrete_input'"],
        ),
    ],
)
def test_one_mistake_one_error(tmp_path: Path, tag: str, expected: list[str]) -> None:
    """A wrong type or table is reported once, without a second error caused by the placeholder."""
    path = write(tmp_path)
    path.write_text(path.read_text().replace('table = "coil"\naddress = 0\ntype = "bool"', tag))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    got = [f"{i.path}: {i.message}" for i in info.value.issues]
    assert len(got) == len(expected), got
    for line, start in zip(got, expected, strict=True):
        assert line.startswith(start)


def test_bom_in_load_toml_only_at_start(tmp_path: Path) -> None:
    """Only a leading BOM is skipped; the parse result is the same as without it."""
    path = tmp_path / "x.toml"
    path.write_bytes(b'\xef\xbb\xbfa = "b"\n')
    issues = Issues(str(path))
    assert load_toml(path, issues) == {"a": "b"}
    assert issues.items == []
