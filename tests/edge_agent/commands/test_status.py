"""``edge-agent status``: state-dir discovery, exit codes, --json and --watch."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.commands import status as status_cmd

FIXTURE = Path(__file__).resolve().parents[2] / "cases" / "status" / "status.json"
ROOT = Path(__file__).resolve().parents[3]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent")
    sub = parser.add_subparsers(dest="command")
    status_cmd.register(sub)
    return parser


def _run(*argv: str) -> int:
    args = _parser().parse_args(["status", *argv])
    return int(args.func(args))


def _dead_pid() -> int:
    """A PID that was an agent a moment ago and is gone now."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return proc.pid


def _write_snapshot(
    state_dir: Path, *, age_s: float = 0.5, pid: int | None = None, **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    data["written_at"] = time.time() - age_s
    data["agent"]["pid"] = _dead_pid() if pid is None else pid
    data.update(extra)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "status.json").write_text(json.dumps(data))
    return data


def test_fresh_snapshot_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh snapshot is rendered as tables and the exit code is 0."""
    _write_snapshot(tmp_path)
    assert _run("--state-dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "DEVICES" in out
    assert "modbus_tcp" in out
    assert "AGENT NOT RUNNING" not in out


def test_json_prints_the_snapshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the snapshot itself, parseable and unchanged."""
    data = _write_snapshot(tmp_path)
    assert _run("--state-dir", str(tmp_path), "--json") == 0
    assert json.loads(capsys.readouterr().out) == data


def test_missing_snapshot_exits_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No snapshot file gives a clear message on stderr and exit code 1."""
    assert _run("--state-dir", str(tmp_path)) == 1
    captured = capsys.readouterr()
    assert "No status snapshot at" in captured.err
    assert str(tmp_path / "status.json") in captured.err
    assert captured.out == ""


def test_stale_snapshot_exits_three(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A snapshot older than three intervals whose process is gone: crashed, exit 3."""
    _write_snapshot(tmp_path, age_s=120)
    assert _run("--state-dir", str(tmp_path)) == 3
    assert "AGENT NOT RUNNING (crashed?)" in capsys.readouterr().out


def test_stale_json_warns_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --json a stale snapshot still prints valid JSON and warns on stderr."""
    _write_snapshot(tmp_path, age_s=120)
    assert _run("--state-dir", str(tmp_path), "--json") == 3
    captured = capsys.readouterr()
    assert json.loads(captured.out)["agent"]["id"] == "gw-hall2"
    assert "not running (crashed?)" in captured.err


def test_clean_stop_exits_four(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A snapshot the agent marked on its way out: 'stopped cleanly at', exit 4, no alarm."""
    stopped = time.time() - 600
    _write_snapshot(tmp_path, age_s=600, stopped_at=stopped)
    assert _run("--state-dir", str(tmp_path)) == 4
    out = capsys.readouterr().out
    assert "Agent stopped cleanly at " in out
    assert "!!!" not in out


def test_hung_agent_is_told_from_a_crashed_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stale snapshot, agent process still there: hung (exit 3), not 'crashed'."""
    fake = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "edge-agent", "run"]
    )
    try:
        # Until the child has exec'd, /proc shows the parent's command line (seen under load).
        deadline = time.monotonic() + 10.0
        while b"edge-agent" not in Path(f"/proc/{fake.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the fake agent never started"
            time.sleep(0.01)
        _write_snapshot(tmp_path, age_s=120, pid=fake.pid)
        assert status_cmd.process_alive(fake.pid) is True
        assert _run("--state-dir", str(tmp_path)) == 3
        assert f"AGENT HUNG: process {fake.pid} is there" in capsys.readouterr().out
    finally:
        fake.kill()
        fake.wait(10)
    assert status_cmd.process_alive(fake.pid) is False


def test_config_as_positional_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`status FILE` is the same as `status -c FILE`."""
    _write_snapshot(tmp_path / "state")
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nid = "gw"\nsite = "s"\nstate_dir = "state"\n')
    assert _run(str(config)) == 0
    assert "gw-hall2" in capsys.readouterr().out


@pytest.mark.parametrize("relative", [True, False])
def test_state_dir_from_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], relative: bool
) -> None:
    """-c CONFIG uses [agent].state_dir; a relative one is taken from the config's directory."""
    state = tmp_path / "var" / "state"
    _write_snapshot(state)
    config = tmp_path / "etc" / "agent.toml"
    config.parent.mkdir()
    value = "../var/state" if relative else str(state)
    config.write_text(f'[agent]\nid = "gw"\nsite = "s"\nstate_dir = "{value}"\n')
    assert _run("-c", str(config)) == 0
    assert "gw-hall2" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "needle"),
    [("[agent\n", "invalid TOML"), ("[agent]\nstate_dir = 3\n", "agent.state_dir")],
)
def test_unusable_config_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, needle: str
) -> None:
    """A config that cannot be parsed, or a non-string state_dir, exits 2 naming the problem."""
    config = tmp_path / "agent.toml"
    config.write_text(content)
    assert _run("-c", str(config)) == 2
    assert needle in capsys.readouterr().err


def test_resolution_order(tmp_path: Path) -> None:
    """Without state_dir: $STATE_DIRECTORY, then a dir holding a snapshot, then the default."""
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nid = "gw"\n')
    absent = tmp_path / "no-default.toml"
    resolve = status_cmd.resolve_state_dir
    env = {"STATE_DIRECTORY": "/var/lib/edge-agent-x"}
    assert resolve(state_dir=None, config=config, environ=env) == Path("/var/lib/edge-agent-x")
    assert resolve(state_dir=tmp_path / "x", config=config, environ=env) == tmp_path / "x"
    assert resolve(state_dir=None, config=config, environ={}) == status_cmd.DEFAULT_STATE_DIR
    _write_snapshot(tmp_path / "state")
    assert resolve(state_dir=None, config=config, environ={}) == tmp_path / "state"
    # The installed config is used when no option is given.
    assert (
        resolve(state_dir=None, config=None, environ={}, default_config=config)
        == tmp_path / "state"
    )
    assert resolve(state_dir=None, config=None, environ={}, default_config=absent) in (
        status_cmd.DEFAULT_STATE_DIR,
    )
    # A broken installed config is ignored when the technician did not name it.
    broken = tmp_path / "broken.toml"
    broken.write_text("[agent\n")
    assert resolve(state_dir=None, config=None, environ=env, default_config=broken) == Path(
        "/var/lib/edge-agent-x"
    )


def test_config_and_state_dir_are_exclusive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config file and --state-dir cannot be combined (usage error 2)."""
    assert _run("-c", "a.toml", "--state-dir", str(tmp_path)) == 2
    assert "not both" in capsys.readouterr().err


def test_watch_refreshes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--watch renders repeatedly (bounded here by --count), re-reading the snapshot each time."""
    _write_snapshot(tmp_path)
    started = time.monotonic()
    assert _run("--state-dir", str(tmp_path), "--watch", "0.2", "--count", "3") == 0
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    assert out.count("edge-agent status  agent=") == 3
    assert "\033[" not in out  # not a terminal: no screen clearing
    assert 0.35 <= elapsed < 5


@pytest.mark.integration
def test_console_command_end_to_end(tmp_path: Path) -> None:
    """The real CLI (python -m edge_agent status) has the command registered and reads the file."""
    _write_snapshot(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent", "status", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "MACHINES (today)" in proc.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "edge_agent", "status", "--state-dir", str(tmp_path / "none")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1
    assert "No status snapshot" in missing.stderr
