"""The ``edge-agent`` command line: one sub-command per module in ``edge_agent.commands``.

Each command module exposes ``register(subparsers)``, which adds its parser
and sets ``func`` to a callable taking the parsed arguments and returning an
exit code. Modules are imported lazily by name so a technician's
``check-config`` does not import asyncua.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from edge_agent import __version__

# Order is the order shown in --help.
COMMAND_MODULES = (
    "run",
    "check_config",
    "demo",
    "status",
    "replay",
    "export",
    "probe",
    "browse",
    "opcua",
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure_logging(verbosity: int, level_name: str | None = None) -> None:
    """Log to stderr in a line format journald reads (it adds its own timestamps)."""
    level = getattr(logging, level_name.upper(), logging.INFO) if level_name else logging.WARNING
    if verbosity == 1:
        level = min(level, logging.INFO)
    elif verbosity >= 2:
        level = logging.DEBUG
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)
    # Libraries are chatty (asyncua logs every request, pymodbus logs every timeout at ERROR
    # with a frame dump, paho logs socket errors). The drivers and the uplink log each loss
    # and recovery once in their own words, so the libraries stay quiet unless -vvv.
    for noisy in ("asyncua", "pymodbus", "paho"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity >= 3 else logging.CRITICAL)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Edge data agent: PLC drivers, buffer, state/OEE calculator, MQTT uplink.",
        epilog="Examples:\n  edge-agent check-config /etc/edge-agent/agent.toml\n"
        "  edge-agent run -c /etc/edge-agent/agent.toml\n  edge-agent demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"edge_agent.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"edge_agent.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edge-agent`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_FAILURE
    configure_logging(args.verbose)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
