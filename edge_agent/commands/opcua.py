"""``edge-agent opcua trust``: trust an OPC-UA server certificate, consciously and logged.

Fetches the certificate(s) an endpoint presents in GetEndpoints (over an
unsecured channel, which is what GetEndpoints is for), prints subject,
application URI, SHA-1 thumbprint, SHA-256 fingerprint and validity, and
only after an explicit ``yes`` (or ``--yes``) copies the certificate into
the trust directory the agent checks (``<state_dir>/opcua/trusted`` unless
``--trust-dir``). Every trust decision is logged at WARNING level and
appended to ``<trust dir>/../trust-audit.log``.

It never trusts automatically, never connects with a session, and never
touches the client certificate or key. Exit codes: 0 trusted (or already
trusted); 1 refused, no certificate or endpoint unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
from pathlib import Path
from typing import TextIO

__all__ = ["fetch_server_certificates", "register", "run_trust"]

log = logging.getLogger("edge_agent.commands.opcua")

EXIT_OK = 0
EXIT_FAILURE = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``opcua`` sub-command group (``opcua trust``)."""
    parser = subparsers.add_parser(
        "opcua",
        help="OPC-UA tools (trust a server certificate)",
        description="OPC-UA tools.",
        epilog="Example:\n  edge-agent opcua trust --endpoint opc.tcp://10.0.0.5:4840",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="opcua_command", metavar="ACTION", required=True)
    trust = sub.add_parser(
        "trust",
        help="fetch a server certificate, show it, and add it to the trust list after confirmation",
        description="Fetch the certificate an OPC-UA server presents, print subject, thumbprint "
        "and validity, and after confirmation store it in the trust list the agent checks.",
        epilog="Examples:\n  edge-agent opcua trust --endpoint opc.tcp://10.0.0.5:4840\n"
        "  edge-agent opcua trust --endpoint opc.tcp://10.0.0.5:4840 -c agent.toml --yes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    trust.add_argument("--endpoint", required=True, help="opc.tcp://host:port/path")
    where = trust.add_mutually_exclusive_group()
    where.add_argument(
        "-c", "--config", type=Path, help="agent config; its [agent].state_dir is used"
    )
    where.add_argument("--state-dir", type=Path, help="the agent's state directory")
    trust.add_argument(
        "--trust-dir", type=Path, help="trust list directory (default <state_dir>/opcua/trusted)"
    )
    trust.add_argument(
        "--yes", action="store_true", help="trust without asking (the choice is still logged)"
    )
    trust.add_argument("--timeout-s", type=float, default=5.0, help="network timeout (default 5)")
    trust.set_defaults(func=_run_from_args)


def _run_from_args(args: argparse.Namespace) -> int:
    from edge_agent.commands.status import resolve_state_dir
    from edge_agent.errors import ConfigError

    trust_dir: Path | None = args.trust_dir
    if trust_dir is None:
        try:
            state_dir = resolve_state_dir(state_dir=args.state_dir, config=args.config)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        trust_dir = state_dir / "opcua" / "trusted"
    return run_trust(args.endpoint, trust_dir, assume_yes=args.yes, timeout_s=args.timeout_s)


async def fetch_server_certificates(endpoint: str, timeout_s: float) -> list[bytes]:
    """DER certificates the server presents in GetEndpoints (distinct, in order).

    Raises:
        DeviceUnavailable: When the endpoint cannot be reached.
    """
    from asyncua.client.client import Client, _first_cert_from_chain

    from edge_agent.errors import DeviceUnavailable

    client = Client(endpoint, timeout=timeout_s)
    try:
        endpoints = await asyncio.wait_for(client.connect_and_get_server_endpoints(), timeout_s * 2)
    except (OSError, TimeoutError, asyncio.TimeoutError, RuntimeError) as exc:
        raise DeviceUnavailable(f"{endpoint}: {type(exc).__name__}: {exc}") from exc
    certs: list[bytes] = []
    for ep in endpoints:
        if ep.ServerCertificate:
            der = _first_cert_from_chain(ep.ServerCertificate)
            if der not in certs:
                certs.append(der)
    return certs


def _confirm(prompt: str, stdin: TextIO, stdout: TextIO) -> bool:
    if not stdin.isatty():
        print("Not a terminal: refusing to trust without --yes.", file=stdout)
        return False
    stdout.write(prompt)
    stdout.flush()
    return stdin.readline().strip().lower() in ("y", "yes")


def run_trust(
    endpoint: str,
    trust_dir: Path,
    *,
    assume_yes: bool = False,
    timeout_s: float = 5.0,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Fetch, show and (after confirmation) trust the server certificate(s) of ``endpoint``."""
    from drivers.opcua.security import TrustList, describe, load_certificate
    from edge_agent.errors import DeviceUnavailable

    out = stdout or sys.stdout
    inp = stdin or sys.stdin
    try:
        ders = asyncio.run(fetch_server_certificates(endpoint, timeout_s))
    except DeviceUnavailable as exc:
        print(f"error: cannot fetch certificates: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if not ders:
        print(
            f"{endpoint} presents no certificate (it offers security policy None only).", file=out
        )
        return EXIT_FAILURE
    trust = TrustList(trust_dir)
    status = EXIT_OK
    for der in ders:
        cert = load_certificate(der)
        info = describe(cert)
        print(f"Server certificate of {endpoint}:", file=out)
        for line in info.lines():
            print(f"  {line}", file=out)
        if trust.is_trusted(cert):
            print(f"Already trusted (in {trust_dir}).", file=out)
            continue
        now = dt.datetime.now(dt.timezone.utc)
        if not info.not_before <= now <= info.not_after:
            print(
                "WARNING: this certificate is not valid now; the agent will reject it anyway.",
                file=out,
            )
        if not assume_yes and not _confirm("Trust this certificate? [y/N] ", inp, out):
            print("Not trusted.", file=out)
            status = EXIT_FAILURE
            continue
        path = trust.add(cert)
        how = "--yes" if assume_yes else "interactive confirmation"
        log.warning(
            "Trusted OPC-UA server certificate endpoint=%s thumbprint=%s subject=%r path=%s via=%s",
            endpoint,
            info.thumbprint_sha1,
            info.subject,
            path,
            how,
        )
        audit = trust_dir.parent / "trust-audit.log"
        with audit.open("a", encoding="utf-8") as fh:
            fh.write(
                f"{now.isoformat()} trusted endpoint={endpoint} "
                f"thumbprint={info.thumbprint_sha1} via={how}\n"
            )
        print(f"Trusted: {path}", file=out)
    return status
