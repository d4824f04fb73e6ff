"""``edge-agent run FILE``: run the agent in the foreground (systemd runs exactly this).

Before anything starts, the file is validated as a whole and checked against
this machine (:mod:`edge_agent.preflight`, the same checks as
``check-config``): a problem is listed with its key path and the command exits
2, so systemd's journal shows why in a few lines instead of a traceback or a
retry loop. Warnings (placeholder addresses) are logged and the agent starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from edge_agent.cli import (
    DEFAULT_CONFIG,
    EXIT_CONFIG,
    add_config_argument,
    config_path,
    configure_logging,
    describe_os_error,
)
from edge_agent.errors import ConfigError

log = logging.getLogger("edge_agent")

# Files the agent creates (state directory, buffer.db and its WAL, status.json, the
# sequence ledger) hold plant data: never world-readable, whoever starts the agent.
UMASK = 0o027


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``run`` sub-command."""
    p = sub.add_parser(
        "run",
        help="run the agent",
        description="Run the agent in the foreground until SIGTERM/SIGINT; SIGHUP reloads. "
        "The configuration is checked first (as check-config does); a problem exits 2.",
        epilog="Examples:\n  edge-agent run /etc/edge-agent/agent.toml\n"
        "  edge-agent run -c /etc/edge-agent/agent.toml     # the same (systemd unit)\n"
        "  edge-agent -v run agent.toml                     # info logs whatever log_level says",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_argument(p)
    p.set_defaults(func=_run)


def _refuse(file: object, lines: list[str]) -> int:
    print(
        f"{file}: configuration invalid, not starting ({len(lines)} problem(s)):", file=sys.stderr
    )
    for line in lines:
        print(f"  {line}", file=sys.stderr)
    return EXIT_CONFIG


def _run(args: argparse.Namespace) -> int:
    # Imported here: every command's parser is built at start, and `edge-agent verify` on a
    # customer's laptop should not load the drivers and the MQTT client for nothing.
    from edge_agent.config import load_config_compact
    from edge_agent.preflight import preflight

    file = config_path(args) or DEFAULT_CONFIG
    try:
        config = load_config_compact(file)
    except ConfigError as exc:
        return _refuse(file, [str(issue) for issue in exc.issues])
    findings = preflight(config)
    errors = [f"{file}: {f}" for f in findings if f.level == "error"]
    if errors:
        return _refuse(file, errors)
    # Only ever stricter than what we were given (systemd's UMask= may say 0077).
    os.umask(os.umask(UMASK) | UMASK)
    state_dir = config.agent.state_dir
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # preflight cannot foresee everything (a read-only mount, a race with another process).
        return _refuse(
            file, [f"{file}: agent.state_dir: cannot create {state_dir}: {describe_os_error(exc)}"]
        )
    configure_logging(args.verbose, config.agent.log_level)
    for finding in findings:
        log.warning("Configuration warning file=%s %s", file, finding)
    from edge_agent.runtime import run_agent

    return run_agent(config)
