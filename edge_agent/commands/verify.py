"""``edge-agent verify``: check an evidence bundle or a capture of MQTT messages.

Takes a bundle (``edge-agent evidence export``) or a file of JSON lines as an MQTT
subscriber saved them, and the device's public key (``--key device.pem``) or its
fingerprint from the contract annex (``--key SHA256:...``). Checks every
signature, the chain's continuity, that no record was altered, and recomputes
each KPI window from the bundle's samples; prints a verdict per window and per
contract period. Needs nothing from the gateway and imports neither SQLite,
MQTT nor the drivers: it runs from the wheel on the customer's laptop.

Exit codes: 0 verified, 1 evidence problem found (altered, missing, reordered,
replayed, foreign-signed or truncated records, numbers that do not recompute),
2 usage error (no key, input file not found).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edge_agent.cli import EXIT_FAILURE, EXIT_OK, UsageError

EXIT_VERIFIED = EXIT_OK
EXIT_PROBLEM = EXIT_FAILURE


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``verify`` sub-command."""
    p = sub.add_parser(
        "verify",
        help="check an evidence bundle or an MQTT capture against the device key",
        description="Check signatures, chain continuity and KPI numbers of evidence.",
        epilog="Examples:\n"
        "  edge-agent verify nov.zip --key 'SHA256:3f2a 9c1e ...'\n"
        "  edge-agent verify capture.jsonl --key device.pem\n"
        "  mosquitto_sub -t 'edge/#' -F %j > capture.jsonl   # a capture verify reads\n\n"
        "Exit codes: 0 verified, 1 evidence problem found, 2 usage error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, metavar="BUNDLE_OR_CAPTURE")
    p.add_argument(
        "--key",
        action="append",
        required=True,
        metavar="KEY",
        help="trusted device key: a PEM public key file or a fingerprint (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--all-windows", action="store_true", help="list every window, not only a summary"
    )
    p.set_defaults(func=run)


def _trust(values: list[str]) -> Any:
    from edge_agent.evidence.keys import KeyFileError, load_public_pem, parse_fingerprint
    from edge_agent.evidence.verify import Trust

    trust = Trust()
    for value in values:
        fingerprint = parse_fingerprint(value)
        if fingerprint is not None:
            trust.fingerprints.add(fingerprint)
            continue
        path = Path(value)
        if not path.is_file():
            raise UsageError(f"--key {value!r}: neither a fingerprint nor a PEM file")
        try:
            trust.keys.append(load_public_pem(path.read_bytes(), str(path)))
        except KeyFileError as exc:
            raise UsageError(f"--key: {exc}") from None
    return trust


def run(args: argparse.Namespace) -> int:
    """Verify and print the report; see the module docstring for exit codes."""
    from edge_agent.evidence.bundle import is_bundle, read_bundle, read_capture
    from edge_agent.evidence.verify import verify

    path: Path = args.input
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    trust = _trust(args.key)
    evidence = read_bundle(path) if is_bundle(path) else read_capture(path)
    report = verify(evidence, trust)
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        print(render(report, evidence.bundle, all_windows=args.all_windows))
    return EXIT_VERIFIED if report.ok else EXIT_PROBLEM


def render(report: Any, bundle: bool, *, all_windows: bool = False) -> str:
    """The report as text for a person (problems first, verdicts, the result last)."""
    from collections import Counter

    lines = [f"{'Evidence bundle' if bundle else 'MQTT capture'}: {report.source}"]
    lines += [f"chain: {c}" for c in report.chain]
    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(report.counts.items()))
    lines.append(f"records: {counts}")
    lines.append("")
    lines.append("KPI windows (final records, highest revision):")
    by_verdict = Counter(w.verdict for w in report.windows)
    for w in report.windows:
        if all_windows or w.verdict not in ("verified", "authentic") or _is_long(w.window):
            lines.append(
                f"  {w.machine:<12} {w.window:<28} rev {w.revision:<2} {w.verdict.upper():<10} "
                f"{w.detail}"
            )
    if not report.windows:
        lines.append("  (none)")
    summary = ", ".join(f"{n} {v}" for v, n in sorted(by_verdict.items()))
    lines.append(f"  {len(report.windows)} windows: {summary or 'none'}")
    if report.periods:
        lines.append("")
        lines.append("Contract periods:")
        for p in report.periods:
            lines.append(f"  {p.machine:<12} {p.window:<28} {p.verdict.upper():<12} {p.detail}")
    gaps = [f for f in report.findings if f.severity == "gap"]
    notes = [f for f in report.findings if f.severity == "note"]
    if gaps:
        lines.append("")
        lines.append("Gaps declared by the device (signed gap records):")
        lines += [f"  - {f.message}" for f in gaps]
    if notes:
        lines.append("")
        lines += [f"note: {f.message}" for f in notes]
    problems = report.problems
    if problems:
        lines.append("")
        lines.append(f"PROBLEMS ({len(problems)}):")
        lines += [f"  - [{f.code}] {f.message}" for f in problems]
    lines.append("")
    if problems:
        lines.append(f"RESULT: NOT VERIFIED: {len(problems)} problem(s) found")
    else:
        lines.append("RESULT: VERIFIED: every signature, link and recomputed number checks out")
    return "\n".join(lines)


def _is_long(window: str) -> bool:
    return window.split(":", 1)[0] in ("day", "month", "contract")


__all__ = ["register", "render", "run"]
