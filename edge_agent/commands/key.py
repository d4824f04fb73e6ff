"""``edge-agent key show|rotate``: the device's evidence signing key.

``show`` prints the public key (PEM) and its fingerprint, the line that goes into
a contract annex, plus every earlier key and a rotation still waiting. ``rotate``
prepares a new key; the running agent (or the next start) commits a ``key``
record signed by the old key and from then on signs with the new one. Neither
ever prints or copies the private key. Exit codes: 0 done, 1 no key / unreadable,
2 usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent.cli import EXIT_FAILURE, EXIT_OK, add_config_argument, config_path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``key`` sub-command with ``show`` and ``rotate``."""
    p = sub.add_parser(
        "key",
        help="show or rotate the device key that signs the evidence",
        description="The Ed25519 key that signs KPI records, stop events and the audit trail.",
        epilog="Examples:\n  edge-agent key show            # fingerprint for the contract annex\n"
        "  edge-agent key show --pem > device.pem\n"
        "  edge-agent key rotate          # the agent commits the rotation with its next record",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    examples = {
        "show": "Examples:\n  edge-agent key show\n  edge-agent key show --pem > device.pem\n"
        "  edge-agent key show --state-dir /var/lib/edge-agent",
        "rotate": "Example:\n  edge-agent key rotate /etc/edge-agent/agent.toml\n"
        "  edge-agent key show    # the new fingerprint, for the contract annex",
    }
    for name, text in (
        ("show", "print the public key and its fingerprint"),
        ("rotate", "prepare a new key; the agent signs the change with the old one"),
    ):
        v = verbs.add_parser(
            name,
            help=text,
            description=text,
            epilog=examples[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_config_argument(v)
        v.add_argument("--state-dir", type=Path, help="the agent's state directory")
        if name == "show":
            v.add_argument("--pem", action="store_true", help="print only the public key (PEM)")
        v.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``key show`` or ``key rotate``."""
    from edge_agent.commands.status import resolve_state_dir
    from edge_agent.evidence.keys import KeyFileError, KeyStore, format_fingerprint

    state_dir = resolve_state_dir(state_dir=args.state_dir, config=config_path(args, default=None))
    store = KeyStore(state_dir)
    try:
        active = store.active()
        pending = store.pending()
        if args.key_command == "rotate":
            if active is None:
                print(
                    f"edge-agent key rotate: no device key in {store.directory} "
                    "(it is created when the agent first starts)",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
            new = store.prepare_rotation()
            print(f"new key prepared: kid {new.kid}")
            print(f"fingerprint: {format_fingerprint(new.public.fingerprint)}")
            print(
                "The agent commits the rotation (a key record signed by the old key) with its "
                "next record and then signs with the new key; the old private key is deleted "
                "then. Give the new fingerprint to your customers for the contract annex."
            )
            return EXIT_OK
    except KeyFileError as exc:
        print(f"edge-agent key: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if active is None:
        print(
            f"edge-agent key show: no device key in {store.directory} "
            "(it is created when the agent first starts)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if args.pem:
        print(active.public.pem(), end="")
        return EXIT_OK
    print(f"key id:      {active.kid}")
    print(f"fingerprint: {format_fingerprint(active.public.fingerprint)}")
    print(f"algorithm:   Ed25519 ({store.active_path}, private, never published)")
    print(active.public.pem(), end="")
    if pending is not None:
        print(f"rotation waiting to be committed by the agent: new kid {pending.kid}")
    older = [
        k for k in store.public_keys() if k.kid not in (active.kid, getattr(pending, "kid", ""))
    ]
    for key in older:
        print(f"earlier key: {key.kid} {format_fingerprint(key.fingerprint)}")
    return EXIT_OK
