"""The systemd unit: required directives, hardening score, and systemd's own verifier."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
UNIT = ROOT / "systemd" / "edge-agent.service"
AGENT_BIN = "/opt/edge-agent/venv/bin/edge-agent"
CONFIG = "/etc/edge-agent/agent.toml"

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


def _directives() -> list[tuple[str, str, str]]:
    """Return (section, key, value) per assignment; repeated keys stay separate, as in systemd."""
    out: list[tuple[str, str, str]] = []
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def _values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in _directives() if s == section and k == key]


def _one(key: str, section: str = "Service") -> str:
    values = _values(key, section)
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "30"),
        ("ExecStartPre", f"{AGENT_BIN} check-config {CONFIG}"),
        ("ExecStart", f"{AGENT_BIN} run -c {CONFIG}"),
        ("Restart", "on-failure"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "edge-agent"),
        ("ConfigurationDirectory", "edge-agent"),
        ("LogsDirectory", "edge-agent"),
        ("SupplementaryGroups", "dialout"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("CapabilityBoundingSet", ""),
        ("DevicePolicy", "closed"),
        ("SystemCallErrorNumber", "EPERM"),
    ],
)
def test_required_directive(key: str, value: str) -> None:
    """The unit sets each directive the service contract relies on, exactly once."""
    assert _one(key) == value


def test_reload_validates_before_signalling() -> None:
    """ExecReload runs check-config first, then sends SIGHUP to the main process."""
    assert _values("ExecReload") == [
        f"{AGENT_BIN} check-config {CONFIG}",
        "/bin/kill -HUP $MAINPID",
    ]


def test_serial_ports_stay_reachable() -> None:
    """All serial TTY groups are allowed, and nothing that hides devices or breaks psutil is set."""
    allowed = {v.split()[0] for v in _values("DeviceAllow")}
    assert {"char-ttyUSB", "char-ttyAMA", "char-ttyS", "char-ttyACM"} <= allowed
    assert all(v.endswith(" rw") for v in _values("DeviceAllow"))
    assert _values("PrivateDevices") in ([], ["no"])
    assert _values("ProcSubset") == []
    assert "@system-service" in _values("SystemCallFilter")


def test_environment_and_stop_timeout() -> None:
    """Faulthandler and no-bytecode are set; stop has a bounded timeout."""
    env = " ".join(_values("Environment")).split()
    assert "PYTHONFAULTHANDLER=1" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert 0 < int(_one("TimeoutStopSec")) <= 90


def test_start_does_not_wait_for_network_or_time() -> None:
    """The agent must start and buffer offline: no ordering after time-sync or network-online."""
    after = " ".join(
        _values("After", "Unit") + _values("Wants", "Unit") + _values("Requires", "Unit")
    )
    assert "time-sync.target" not in after
    assert "network-online.target" not in after
    assert _one("WantedBy", "Install") == "multi-user.target"


@needs_analyze
def test_security_exposure_is_at_most_2() -> None:
    """systemd-analyze security rates the unit's exposure at 2.0 or better."""
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for edge-agent\.service: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout[-2000:] + proc.stderr
    assert float(match.group(1)) <= 2.0


@needs_analyze
def test_verify_only_misses_the_installed_binary() -> None:
    """Verifying the shipped unit complains about nothing but the not-yet-installed binary."""
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    complaints = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.strip() and f"Command {AGENT_BIN} is not executable" not in line
    ]
    assert complaints == []


@needs_analyze
def test_verify_clean_with_binary_present(tmp_path: Path) -> None:
    """With the ExecStart binary present (a stub), systemd-analyze verify passes cleanly."""
    stub = tmp_path / "edge-agent"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "edge-agent.service"
    unit.write_text(UNIT.read_text().replace(AGENT_BIN, str(stub)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""
    assert proc.stderr.strip() == ""


def test_restarts_forever_at_a_bounded_rate() -> None:
    """An unattended gateway never stops retrying, but not faster than every few seconds."""
    assert _one("StartLimitIntervalSec", "Unit") == "0"
    assert 5 <= int(_one("RestartSec")) <= 60
