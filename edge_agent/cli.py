"""The ``edge-agent`` command line: one sub-command per module in ``edge_agent.commands``.

Each command module exposes ``register(subparsers)``, which adds its parser
and sets ``func`` to a callable taking the parsed arguments and returning an
exit code. Modules are imported lazily by name so a technician's
``check-config`` does not import asyncua, and a command line naming a command
imports that command's module only (:data:`COMMANDS`): the agent under systemd
(``edge-agent run``) does not hold every other command's code (about 0.6 MB).

One shape for every command: a command that works on the agent's
configuration takes it as a positional ``FILE`` (``-c FILE`` is the same
thing, for scripts and the systemd unit), and without one uses
``/etc/edge-agent/agent.toml``, where ``scripts/install.sh`` puts it.

Guarantees (:func:`run_guarded`): no Python traceback reaches the user. An
error the agent expects (a bad path, an unreadable file) is one line naming
the thing; an output pipe closed early (``| head``) ends the command quietly
with :data:`EXIT_PIPE`; a bug is one line too, with the traceback under
``-vv``. Exit codes are the table below (documented in ``docs/cli.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from edge_agent import __version__

# Order is the order shown in --help.
COMMAND_MODULES = (
    "run",
    "check_config",
    "demo",
    "status",
    "replay",
    "contract",
    "report",
    "export",
    "evidence",
    "verify",
    "key",
    "probe",
    "browse",
    "opcua",
)

#: The module of each command name (a module may register several); ``--help`` and an
#: unknown name build them all. A test checks this against what the modules register.
COMMANDS = {
    "run": "run",
    "check-config": "check_config",
    "demo": "demo",
    "status": "status",
    "replay": "replay",
    "contract": "contract",
    "ack": "contract",
    "report": "report",
    "serve-report": "report",
    "export": "export",
    "evidence": "evidence",
    "verify": "verify",
    "key": "key",
    "probe": "probe",
    "browse": "browse",
    "opcua": "opcua",
}

#: Exit codes of every ``edge-agent`` command (docs/cli.md lists them; a test keeps both in step).
EXIT_OK = 0
#: The command could not do its job: device or broker unreachable, file unreadable, a bug.
EXIT_FAILURE = 1
#: Invalid configuration or command line (argparse uses 2 as well).
EXIT_CONFIG = 2
#: ``status``: the agent is not running (crashed?) or hung: its snapshot is stale.
EXIT_NOT_RUNNING = 3
#: ``status``: the agent stopped cleanly (``systemctl stop``); the figures are from that moment.
EXIT_STOPPED = 4
#: Interrupted with Ctrl-C.
EXIT_INTERRUPTED = 130
#: The output pipe was closed early (``| head``): quiet, like other Unix tools (128 + SIGPIPE).
EXIT_PIPE = 141

#: Where scripts/install.sh puts the configuration; used when no FILE is given.
DEFAULT_CONFIG = Path("/etc/edge-agent/agent.toml")

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


def add_config_argument(
    parser: argparse.ArgumentParser, *, many: bool = False, help_text: str | None = None
) -> None:
    """Add the agent config as a positional ``FILE`` with ``-c/--config`` as an alias.

    After parsing, :func:`config_paths` / :func:`config_path` give the files.
    """
    what = help_text or f"agent TOML file (default {DEFAULT_CONFIG})"
    parser.add_argument(
        "config_files", nargs="*" if many else "?", metavar="FILE", default=None, help=what
    )
    parser.add_argument(
        "-c",
        "--config",
        dest="config_options",
        action="append",
        type=str,
        metavar="FILE",
        default=None,
        help="the same as FILE (the systemd unit and older scripts use -c)",
    )


def config_paths(args: argparse.Namespace, *, default: Path | None = DEFAULT_CONFIG) -> list[Path]:
    """Config files given as ``FILE`` or ``-c FILE`` (either or both), else ``[default]``."""
    given = args.config_files
    files = [given] if isinstance(given, str) else list(given or [])
    for extra in args.config_options or []:
        if extra not in files:
            files.append(extra)
    if not files and default is not None:
        files = [str(default)]
    return [Path(f) for f in files]


def config_path(args: argparse.Namespace, *, default: Path | None = DEFAULT_CONFIG) -> Path | None:
    """The one config file of a command (``FILE`` or ``-c FILE``), else ``default``.

    Raises:
        UsageError: Two different files were given.
    """
    files = config_paths(args, default=default)
    if len(files) > 1:
        raise UsageError(
            f"one config file expected, got {len(files)}: {', '.join(map(str, files))}"
        )
    return files[0] if files else None


class UsageError(Exception):
    """A command line that cannot be run as given (exit 2, one line)."""


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file or socket operation: the path first, then the reason."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return reason


def _print_err(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # stderr closed too: nothing left to tell
        print(text, file=sys.stderr, flush=True)


def _quiet_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def run_guarded(
    name: Callable[[], str], func: Callable[[], int], *, debug: Callable[[], bool]
) -> int:
    """Run a command body so that no traceback reaches the user; return the exit code.

    Args:
        name: Program and command name for messages (``edge-agent export``), asked
            when needed (it is known only once the command line is parsed).
        func: The command body, returning its exit code (argparse may raise SystemExit).
        debug: Whether to print the traceback of an unexpected error (``-vv``).
    """
    try:
        try:
            return func()
        finally:
            # A pipe closed by the reader shows up on this flush, not at interpreter exit.
            sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_PIPE
    except KeyboardInterrupt:
        _print_err(f"{name()}: interrupted")
        return EXIT_INTERRUPTED
    except UsageError as exc:
        _print_err(f"{name()}: error: {exc}")
        return EXIT_CONFIG
    except OSError as exc:
        _print_err(f"{name()}: {describe_os_error(exc)}")
        if debug():
            traceback.print_exc()
        return EXIT_FAILURE
    except Exception as exc:
        _print_err(
            f"{name()}: internal error: {type(exc).__name__}: {exc} "
            "(a bug: please report it with the output of the same command run with -vv)"
        )
        if debug():
            traceback.print_exc()
        return EXIT_FAILURE


def _command_in(argv: Sequence[str]) -> str | None:
    """The module of the command an argument list names (its first word), if known."""
    for arg in argv:
        if not arg.startswith("-"):
            return COMMANDS.get(arg)
    return None


def build_parser(module: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser with every sub-command, or those of one ``module``."""
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Edge data agent: PLC drivers, buffer, state/OEE calculator, MQTT uplink.",
        epilog="Examples:\n  edge-agent demo\n"
        "  edge-agent check-config /etc/edge-agent/agent.toml\n"
        "  edge-agent run /etc/edge-agent/agent.toml\n  edge-agent status\n\n"
        "Exit codes: 0 ok, 1 failed, 2 invalid config or usage, 3/4 status: not running /\n"
        "stopped cleanly, 130 Ctrl-C, 141 output closed early (| head). See docs/cli.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES if module is None else (module,):
        try:
            commands = importlib.import_module(f"edge_agent.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"edge_agent.commands.{name}":
                continue
            raise
        commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edge-agent`` console script."""
    prog = ["edge-agent"]
    verbose = [0]

    def body() -> int:
        words = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(_command_in(words))
        args = parser.parse_args(words)
        verbose[0] = args.verbose
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_FAILURE
        prog[0] = f"edge-agent {args.command}"
        configure_logging(args.verbose)
        return int(args.func(args))

    return run_guarded(lambda: prog[0], body, debug=lambda: verbose[0] >= 2)
