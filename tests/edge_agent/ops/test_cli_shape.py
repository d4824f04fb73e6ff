"""One shape for every edge-agent command: positional FILE, -c as its alias, examples in --help."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.cli import (
    COMMANDS,
    DEFAULT_CONFIG,
    UsageError,
    _command_in,
    build_parser,
    config_path,
    config_paths,
)

# Commands that work on the agent's configuration (FILE, or -c FILE, or the installed one).
CONFIG_COMMANDS = ("run", "check-config", "status", "export", "demo")


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((name, sub))
                out += [(f"{name} {n}", p) for n, p in _subparsers(sub)]
    return out


def test_every_command_has_examples_in_its_help() -> None:
    """edge-agent and every sub-command (and sub-sub-command) show examples in --help."""
    parser = build_parser()
    commands = _subparsers(parser)
    assert {name for name, _ in commands} >= {
        "run",
        "check-config",
        "demo",
        "status",
        "replay",
        "export",
        "probe",
        "probe modbus",
        "browse",
        "opcua",
        "opcua trust",
    }
    for name, sub in [("edge-agent", parser), *commands]:
        assert "Example" in sub.format_help(), name


@pytest.mark.parametrize("command", CONFIG_COMMANDS)
def test_config_is_positional_with_c_as_alias(command: str) -> None:
    """`CMD FILE`, `CMD -c FILE` and `CMD --config FILE` name the same file; none: installed."""
    parser = build_parser()
    extra = ["--from", "2026-01-01", "--to", "2026-01-02", "--kind", "events"]
    extra = extra if command == "export" else []
    for argv in (["a.toml"], ["-c", "a.toml"], ["--config", "a.toml"], ["a.toml", "-c", "a.toml"]):
        args = parser.parse_args([command, *argv, *extra])
        assert config_path(args) == Path("a.toml"), argv
    args = parser.parse_args([command, *extra])
    assert config_path(args) == DEFAULT_CONFIG


def test_two_different_files_are_a_usage_error() -> None:
    """`run a.toml -c b.toml` is ambiguous: a usage error, not a guess."""
    args = build_parser().parse_args(["run", "a.toml", "-c", "b.toml"])
    with pytest.raises(UsageError, match="one config file expected"):
        config_path(args)


def test_check_config_takes_several_files_either_way() -> None:
    """check-config validates every file given, positional and with -c."""
    args = build_parser().parse_args(["check-config", "a.toml", "b.toml", "-c", "c.toml"])
    assert config_paths(args) == [Path("a.toml"), Path("b.toml"), Path("c.toml")]


@pytest.mark.integration
def test_demo_speaks_plainly_to_the_end(tmp_path: Path) -> None:
    """`edge-agent demo` ends with the uplink in words, then the path of its report.

    Never 'uplink backlog: None'; the report (issue 17) is written to the current directory.
    """
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent", "demo", "--duration", "3", "--plain"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "None" not in proc.stdout
    *_, uplink, _blank, last = proc.stdout.rstrip().splitlines()
    assert uplink.startswith("uplink: agent stopped; devices up: 3/3"), uplink
    # It ends with the run's report written (issue 17), in the current directory.
    report = tmp_path / "edge-demo-report.html"
    assert last == f"report written: {report} (open it in a browser)", last
    page = report.read_text(encoding="utf-8")
    assert page.count('class="chart timeline"') == 3
    assert "connected, " in proc.stdout  # while running: 'connected, N messages waiting'


def test_each_command_name_maps_to_the_module_that_registers_it() -> None:
    """COMMANDS names every top-level command, and its module alone registers it."""
    everything = {name for name, _ in _subparsers(build_parser()) if " " not in name}
    assert everything == set(COMMANDS)
    for name, module in COMMANDS.items():
        assert name in {n for n, _ in _subparsers(build_parser(module))}, name
    assert _command_in(["-v", "run", "a.toml"]) == "run"
    assert _command_in(["serve-report", "--db", "b.db"]) == "report"
    assert _command_in(["--help"]) is None
    assert _command_in(["nonsense"]) is None
