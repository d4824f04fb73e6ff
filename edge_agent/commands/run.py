"""``edge-agent run -c FILE``: run the agent in the foreground (systemd runs exactly this)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from edge_agent.cli import EXIT_CONFIG, configure_logging
from edge_agent.config import load_config_compact
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
        description="Run the agent in the foreground until SIGTERM/SIGINT; SIGHUP reloads.",
        epilog="Example:\n  edge-agent run -c /etc/edge-agent/agent.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config", required=True, help="agent TOML file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        config = load_config_compact(args.config)
    except ConfigError as exc:
        print(
            f"Configuration invalid, not starting ({len(exc.issues)} problem(s)):", file=sys.stderr
        )
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(args.verbose, config.agent.log_level)
    # Only ever stricter than what we were given (systemd's UMask= may say 0077).
    os.umask(os.umask(UMASK) | UMASK)
    from edge_agent.runtime import run_agent

    return run_agent(config)
