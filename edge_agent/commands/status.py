"""``edge-agent status``: what the running agent is doing, for the technician on site.

Reads the snapshot the agent writes to ``<state_dir>/status.json`` and prints
devices, tags, machines with today's KPIs, uplink, buffer and host health
(:mod:`edge_agent.status_view`). The state directory is found as the agent
finds it (see :func:`resolve_state_dir`), so plain ``edge-agent status`` works
on an installed gateway.

What it does not do: it never contacts the agent, a PLC or the broker, and
never writes anything; it works while the agent runs and after it died. It
only looks whether the snapshot's process still exists, to tell a crash from
a hang.

Exit codes: 0 agent running (snapshot fresh); 1 snapshot missing or
unreadable; 2 config unusable; 3 not running (crashed?) or hung (snapshot
stale); 4 stopped cleanly (the agent marked its last snapshot on the way out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from edge_agent.cli import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_STOPPED,
    add_config_argument,
    config_path,
)
from edge_agent.configkit import Issues, load_toml
from edge_agent.errors import ConfigError

# edge_agent.status_view (rendering, 0.7 MB of RSS) is imported by the functions that show a
# snapshot: every command module is imported to build the parser, `edge-agent run` included.

__all__ = ["DEFAULT_CONFIG", "DEFAULT_STATE_DIR", "register", "resolve_state_dir", "run"]

DEFAULT_STATE_DIR = Path("/var/lib/edge-agent")
DEFAULT_CONFIG = Path("/etc/edge-agent/agent.toml")
DEFAULT_WATCH_S = 2.0

EXIT_MISSING = EXIT_FAILURE
EXIT_STALE = EXIT_NOT_RUNNING
#: Exit code per :class:`edge_agent.status_view.AgentState` value.
_EXIT_BY_STATE = {
    "running": EXIT_OK,
    "stopped": EXIT_STOPPED,
    "crashed": EXIT_NOT_RUNNING,
    "hung": EXIT_NOT_RUNNING,
    "stale": EXIT_NOT_RUNNING,
}

_CLEAR = "\033[H\033[2J"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``status`` sub-command."""
    parser = subparsers.add_parser(
        "status",
        help="show what the running agent is doing (devices, tags, KPIs, uplink)",
        description="Show the agent's last status snapshot: devices, tags, machines with today's "
        "KPIs, uplink, buffer. Works offline, also after the agent stopped or crashed.",
        epilog="Exit codes: 0 running, 1 no snapshot, 2 config unusable, 3 not running (crashed?)\n"
        "or hung, 4 stopped cleanly.\n"
        "Examples:\n  edge-agent status                     # the installed agent\n"
        "  edge-agent status --watch             # refresh every 2 s until Ctrl-C\n"
        "  edge-agent status agent.toml          # the agent of this config (its state_dir)\n"
        "  edge-agent status --state-dir /var/lib/edge-agent --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_argument(
        parser, help_text="agent config; its [agent].state_dir is used (default: the installed one)"
    )
    parser.add_argument(
        "--state-dir", type=Path, help="the agent's state directory (instead of FILE)"
    )
    parser.add_argument("--json", action="store_true", help="print the raw snapshot as JSON")
    parser.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=DEFAULT_WATCH_S,
        default=None,
        metavar="SECONDS",
        help=f"refresh every SECONDS (default {DEFAULT_WATCH_S:g}) until Ctrl-C",
    )
    parser.add_argument("--count", type=int, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def resolve_state_dir(
    *,
    state_dir: Path | None,
    config: Path | None,
    environ: Mapping[str, str] | None = None,
    default_config: Path = DEFAULT_CONFIG,
) -> Path:
    """Pick the state directory the way the agent does, from what the technician gave.

    Order: ``--state-dir``; else ``[agent].state_dir`` of the config (``-c``,
    or ``/etc/edge-agent/agent.toml`` when it exists), relative paths taken
    from the config's directory; else ``$STATE_DIRECTORY``; else the first of
    ``<config dir>/state`` (the agent's own default outside systemd) and
    ``/var/lib/edge-agent`` that holds a snapshot, else ``/var/lib/edge-agent``.

    Raises:
        edge_agent.errors.ConfigError: The config file cannot be read or its
            ``[agent].state_dir`` is not a string.
    """
    env = os.environ if environ is None else environ
    if state_dir is not None:
        return state_dir
    if config is not None:
        configured = _state_dir_from_config(config)
    elif _is_file(default_config):
        config = default_config
        try:
            configured = _state_dir_from_config(config)
        except ConfigError:
            # Nobody asked for this file: a broken installed config must not hide the status.
            configured = None
    else:
        configured = None
    if configured is not None:
        return configured
    # systemd sets STATE_DIRECTORY for the service (and for `systemd-run -p StateDirectory=`).
    from_env = env.get("STATE_DIRECTORY", "").split(":")[0]
    if from_env:
        return Path(from_env)
    candidates = [config.parent / "state"] if config is not None else []
    candidates.append(DEFAULT_STATE_DIR)
    from edge_agent.status_view import STATUS_FILE

    for candidate in candidates:
        if _is_file(candidate / STATUS_FILE):
            return candidate
    return DEFAULT_STATE_DIR


def _is_file(path: Path) -> bool:
    """``Path.is_file`` that says False instead of raising (e.g. EACCES under /var/lib/private)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _state_dir_from_config(config: Path) -> Path | None:
    """``[agent].state_dir`` of a config file (relative to its directory), or None if unset.

    Raises:
        edge_agent.errors.ConfigError: Unreadable file, invalid TOML, or a non-string value.
    """
    issues = Issues(str(config))
    doc = load_toml(config, issues)
    issues.raise_if_any()
    agent = doc.get("agent", {})
    value = agent.get("state_dir") if isinstance(agent, dict) else None
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        issues.add("agent.state_dir", "expected a non-empty string (a directory path)")
        issues.raise_if_any()
    path = Path(str(value))
    return path if path.is_absolute() else config.parent / path


def process_alive(pid: object) -> bool | None:
    """Whether ``pid`` is a running edge-agent process; None when it cannot be told."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's (the service runs as a dynamic user)
    except OSError:
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc view: the PID exists, take it as the agent
    # After a crash the PID may have been reused by an unrelated process.
    return b"edge-agent" in cmdline or b"edge_agent" in cmdline


def _show_once(path: Path, *, as_json: bool, out: TextIO, clear: bool) -> int:
    """Print the snapshot once; return the exit code it deserves."""
    from edge_agent.status_view import AgentState, SnapshotError, agent_state, load_snapshot, render

    try:
        snapshot = load_snapshot(path)
    except SnapshotError as exc:
        if clear:
            out.write(_CLEAR)
            out.flush()
        print(f"edge-agent status: {exc}", file=sys.stderr)
        return EXIT_MISSING
    now = time.time()
    agent = snapshot.get("agent")
    alive = process_alive(agent.get("pid") if isinstance(agent, dict) else None)
    state = agent_state(snapshot, now, process_alive=alive)
    text = (
        json.dumps(snapshot, indent=2, sort_keys=True) + "\n"
        if as_json
        else render(snapshot, now=now, process_alive=alive)
    )
    if clear:
        out.write(_CLEAR)
    out.write(text)
    out.flush()
    if as_json and state is not AgentState.RUNNING:
        print(f"edge-agent status: agent {_STATE_WORDS[state.value]}", file=sys.stderr)
    return _EXIT_BY_STATE[state.value]


#: What the agent is, per :class:`edge_agent.status_view.AgentState` value.
_STATE_WORDS = {
    "running": "running",
    "stopped": "stopped cleanly",
    "crashed": "not running (crashed?)",
    "hung": "hung (snapshot stale, process still there)",
    "stale": "not running or hung (snapshot stale)",
}


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Execute ``edge-agent status`` with parsed arguments."""
    stream = sys.stdout if out is None else out
    try:
        config = config_path(args, default=None)
        if config is not None and args.state_dir is not None:
            print("edge-agent status: give FILE or --state-dir, not both", file=sys.stderr)
            return EXIT_CONFIG
        state_dir = resolve_state_dir(state_dir=args.state_dir, config=config)
    except ConfigError as exc:
        sep = " " if len(exc.issues) == 1 else "\n"
        print(f"edge-agent status: cannot use the config:{sep}{exc}", file=sys.stderr)
        return EXIT_CONFIG
    from edge_agent.status_view import STATUS_FILE

    path = state_dir / STATUS_FILE
    if args.watch is None:
        return _show_once(path, as_json=args.json, out=stream, clear=False)
    interval = max(0.2, float(args.watch))
    clear = stream.isatty()
    remaining: int | None = args.count
    code = EXIT_OK
    try:
        while remaining is None or remaining > 0:
            code = _show_once(path, as_json=args.json, out=stream, clear=clear)
            if remaining is not None:
                remaining -= 1
                if remaining == 0:
                    break
            time.sleep(interval)
    except KeyboardInterrupt:
        return code
    return code
