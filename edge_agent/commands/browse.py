"""``edge-agent browse``: list an OPC-UA address space and emit config TOML for chosen variables.

Prints the tree below ``--path`` (default ``Objects``) down to ``--depth``
levels with NodeIds in the restart-proof ``nsu=`` form, data types, current
values and engineering units. With ``--toml VAR`` (repeatable; a browse path,
a path suffix such as ``M1/GoodCount``, a browse name or a NodeId) it prints
a ready-to-paste ``[devices.<name>]`` block instead.

Secured servers: pass ``--security-policy``/``--security-mode`` (the client
certificate in the state directory is created on first use and the server
certificate must be trusted with ``edge-agent opcua trust`` first) and
``--username`` with ``--password-env``. It only reads, never writes.
Exit codes: 0 ok; 1 endpoint unreachable, path not found or a ``--toml``
variable not found; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.opcua.config import OpcuaDevice

__all__ = ["register", "run_browse"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``browse`` sub-command."""
    parser = subparsers.add_parser(
        "browse",
        help="list an OPC-UA server's variables and print config TOML for chosen ones",
        description="Browse an OPC-UA address space: tree with NodeIds, data types, values; "
        "--toml prints a ready-to-paste device block.",
        epilog="Example: edge-agent browse opc.tcp://10.0.0.5:4840 --path Objects/Line1 "
        "--toml GoodCount --toml Running --device line1",
    )
    parser.add_argument("endpoint", help="opc.tcp://host:port[/path]")
    parser.add_argument("--path", default="Objects", help="start browse path (default Objects)")
    parser.add_argument("--depth", type=int, default=3, help="levels below --path (default 3)")
    parser.add_argument(
        "--toml", action="append", default=[], metavar="VAR", help="emit TOML for VAR"
    )
    parser.add_argument("--device", default="opcua1", help="device name used in --toml output")
    parser.add_argument(
        "--security-policy",
        default="None",
        choices=("None", "Basic256Sha256", "Aes128_Sha256_RsaOaep"),
    )
    parser.add_argument(
        "--security-mode", default="None", choices=("None", "Sign", "SignAndEncrypt")
    )
    parser.add_argument("--username", help="user name (identity = username)")
    parser.add_argument("--password-env", help="environment variable holding the password")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--state-dir", type=Path, help="state directory (client certificate, trust list)"
    )
    where.add_argument(
        "-c", "--config", type=Path, help="agent config; its [agent].state_dir is used"
    )
    parser.add_argument(
        "--timeout-ms", type=int, default=4000, help="request timeout (default 4000)"
    )
    parser.set_defaults(func=_run_from_args)


def _run_from_args(args: argparse.Namespace) -> int:
    from drivers.opcua.config import (
        DEFAULT_STATE_DIR,
        Identity,
        OpcuaDevice,
        SecurityMode,
        SecurityPolicy,
    )

    if args.depth < 1 or (args.security_policy == "None") != (args.security_mode == "None"):
        print(
            "error: --depth >= 1, and --security-mode None goes with --security-policy None only",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.username and not args.password_env:
        print("error: --username needs --password-env", file=sys.stderr)
        return EXIT_USAGE
    from edge_agent.errors import ConfigError

    try:
        state_dir = _state_dir(args) if args.security_policy != "None" else DEFAULT_STATE_DIR
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    device = OpcuaDevice(
        name=args.device,
        endpoint=args.endpoint,
        tags=(),
        security_policy=SecurityPolicy(args.security_policy),
        security_mode=SecurityMode(args.security_mode),
        identity=Identity.USERNAME if args.username else Identity.ANONYMOUS,
        username=args.username,
        password_env=args.password_env,
        timeout_ms=args.timeout_ms,
        state_dir=state_dir,
    )
    return asyncio.run(run_browse(device, path=args.path, depth=args.depth, toml=args.toml))


def _state_dir(args: argparse.Namespace) -> Path:
    """The agent's state directory, found the way ``edge-agent status`` finds it."""
    from edge_agent.commands.status import resolve_state_dir

    return resolve_state_dir(state_dir=args.state_dir, config=args.config)


async def run_browse(device: OpcuaDevice, *, path: str, depth: int, toml: list[str]) -> int:
    """Browse with the session settings of ``device`` and print the tree or the TOML block."""
    from drivers.opcua.browse import browse, close_browse, open_for_browse, render_tree, toml_block
    from edge_agent.errors import DeviceUnavailable

    try:
        client = await open_for_browse(device)
    except DeviceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        entries = await browse(client, path=path, depth=depth)
    except DeviceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        await close_browse(client, device.timeout_ms / 1000)
    if not toml:
        print(render_tree(entries))
        return EXIT_OK
    text, missing = toml_block(entries, toml, device=device.name, endpoint=device.endpoint)
    print(text, end="")
    for item in missing:
        print(f"error: no variable {item!r} below {path} (depth {depth})", file=sys.stderr)
    return EXIT_FAILURE if missing else EXIT_OK
