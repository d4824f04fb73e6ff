"""``edge-agent status``: what the running agent is doing, for the technician on site.

Reads the snapshot the agent writes to ``<state_dir>/status.json`` and prints
devices, tags, machines with today's KPIs, uplink, buffer and host health
(:mod:`edge_agent.status_view`). The state directory is found as the agent
finds it (see :func:`resolve_state_dir`), so plain ``edge-agent status`` works
on an installed gateway.

What it does not do: it never contacts the agent, a PLC or the broker, and
never writes anything; it works while the agent runs and after it died.

Exit codes: 0 snapshot fresh; 1 snapshot missing or unreadable; 2 config
unusable; 3 snapshot stale (agent not running or hung).
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

from edge_agent.configkit import Issues, load_toml
from edge_agent.errors import ConfigError
from edge_agent.status_view import STATUS_FILE, SnapshotError, is_stale, load_snapshot, render

__all__ = ["DEFAULT_CONFIG", "DEFAULT_STATE_DIR", "register", "resolve_state_dir", "run"]

DEFAULT_STATE_DIR = Path("/var/lib/edge-agent")
DEFAULT_CONFIG = Path("/etc/edge-agent/agent.toml")
DEFAULT_WATCH_S = 2.0

EXIT_OK = 0
EXIT_MISSING = 1
EXIT_CONFIG = 2
EXIT_STALE = 3

_CLEAR = "\033[H\033[2J"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``status`` sub-command."""
    parser = subparsers.add_parser(
        "status",
        help="show what the running agent is doing (devices, tags, KPIs, uplink)",
        description="Show the running agent's last status snapshot. Works offline; "
        "exit 1 when there is no snapshot, 3 when it is stale (agent not running or hung).",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-c", "--config", type=Path, help="agent config; its [agent].state_dir is used"
    )
    where.add_argument("--state-dir", type=Path, help="the agent's state directory")
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


def _show_once(path: Path, *, as_json: bool, out: TextIO, clear: bool) -> int:
    """Print the snapshot once; return the exit code it deserves."""
    try:
        snapshot = load_snapshot(path)
    except SnapshotError as exc:
        if clear:
            out.write(_CLEAR)
            out.flush()
        print(f"edge-agent status: {exc}", file=sys.stderr)
        return EXIT_MISSING
    now = time.time()
    stale = is_stale(snapshot, now)
    text = (
        json.dumps(snapshot, indent=2, sort_keys=True) + "\n"
        if as_json
        else render(snapshot, now=now)
    )
    if clear:
        out.write(_CLEAR)
    out.write(text)
    out.flush()
    if stale and as_json:
        print("edge-agent status: snapshot is stale: agent not running or hung", file=sys.stderr)
    return EXIT_STALE if stale else EXIT_OK


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Execute ``edge-agent status`` with parsed arguments."""
    stream = sys.stdout if out is None else out
    try:
        state_dir = resolve_state_dir(state_dir=args.state_dir, config=args.config)
    except ConfigError as exc:
        print(f"edge-agent status: cannot use the config:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
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
