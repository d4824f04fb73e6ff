"""Check evidence: signatures, chain continuity, no alteration, KPI numbers recomputed.

:func:`verify` takes :class:`Evidence` (the records of an evidence bundle or an
MQTT capture, with the bundle's samples and profiles when there are some) and a
:class:`Trust` (the public keys or fingerprints the customer got with the
contract), and returns a :class:`Report`: every problem named with the record's
``seq``, kind, window and where it was read (file and line), each gap in the
chain with its sequence numbers and time span, and a verdict per KPI window and
per contract period.

What counts as a **problem** (exit 1 of ``edge-agent verify``): a signature that
does not match (the record was altered), a record signed by an unknown, untrusted
or retired key, an unsigned record of a signed kind, two different records with
the same ``(agent, epoch, seq)``, a chain link that does not match (records
deleted or reordered), a record linked to neither neighbour (replayed from
elsewhere), a segment restart without a ``gap`` or ``chain_start`` record, a
bundle that is truncated or whose manifest does not match its files, and a KPI
record whose numbers differ from the recomputation. **Gaps the device declared**
itself (a signed ``gap`` record: messages lost with a damaged database) are
reported with their range but are not a problem of the evidence: the records that
exist are authentic and the loss is on the record.

The checks live in three modules: this one (parsing, de-duplication, signatures,
chain continuity), :mod:`.keycheck` (keys, rotations, the manifest) and
:mod:`.recompute` (numbers); :mod:`.verdicts` holds the data they share. This
module's names are the public API.

Pure: the caller reads the files (:mod:`.bundle`); nothing here imports SQLite,
MQTT or the drivers, so the collector can run the same checks on what it stores.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from edge_agent.evidence import proof
from edge_agent.evidence.keycheck import check_keys, check_manifest
from edge_agent.evidence.keys import PublicKey
from edge_agent.evidence.recompute import STREAMING_FLAGS, check_windows, compare
from edge_agent.evidence.verdicts import (
    GAP,
    NOTE,
    PROBLEM,
    Entry,
    Evidence,
    Finding,
    Rec,
    Report,
    Trust,
    WindowVerdict,
)

__all__ = [
    "GAP",
    "NOTE",
    "PROBLEM",
    "STREAMING_FLAGS",
    "Entry",
    "Evidence",
    "Finding",
    "Report",
    "Trust",
    "WindowVerdict",
    "compare",
    "trusted_public_keys",
    "verify",
]


def _signed_kind(kind: str, data: Mapping[str, Any]) -> bool:
    return proof.policy(kind, data) is not None


def _parse(evidence: Evidence, report: Report) -> list[Rec]:
    """Envelopes and stubs -> records; unsigned records of signed kinds are problems."""
    out: list[Rec] = []
    skipped = 0
    for entry in evidence.entries:
        doc = entry.doc
        try:
            if entry.stub:
                signed = proof.from_stub(doc)
                out.append(Rec(entry, signed, None))
                continue
            signed_or_none = proof.from_envelope(doc)
        except (proof.ProofError, ValueError) as exc:
            report.findings.append(
                Finding(PROBLEM, "malformed", f"{entry.where}: malformed record: {exc}")
            )
            continue
        kind = doc.get("kind")
        data = doc.get("data")
        if signed_or_none is None:
            if isinstance(kind, str) and isinstance(data, dict) and _signed_kind(kind, data):
                seq = doc.get("seq")
                report.findings.append(
                    Finding(
                        PROBLEM,
                        "unsigned",
                        f"seq {seq} ({kind}, {entry.where}): record of a signed kind "
                        "carries no proof (added or stripped after signing)",
                        seq=seq if isinstance(seq, int) else None,
                        where=entry.where,
                    )
                )
            else:
                skipped += 1
            continue
        out.append(Rec(entry, signed_or_none, data if isinstance(data, dict) else {}))
    report.counts["not_signed_kinds"] = skipped
    return out


def _dedupe(recs: list[Rec], bundle: bool, report: Report) -> list[Rec]:
    by_id: dict[tuple[str, str, int], Rec] = {}
    dupes = 0
    for rec in recs:
        key = rec.signed.identity
        seen = by_id.get(key)
        if seen is None:
            by_id[key] = rec
            continue
        same = (
            seen.signed.header_bytes == rec.signed.header_bytes
            and seen.signed.sig == rec.signed.sig
        )
        if same and not bundle:
            dupes += 1  # QoS 1 delivers some messages twice, byte-identical
            continue
        if same:
            report.findings.append(
                Finding(
                    PROBLEM,
                    "duplicate",
                    f"{rec.label}: the same record appears again (first at {seen.entry.where}); "
                    "a bundle holds each record once: replayed",
                    seq=rec.signed.seq,
                    where=rec.entry.where,
                )
            )
            continue
        report.findings.append(
            Finding(
                PROBLEM,
                "conflict",
                f"{rec.label}: a different record with the same agent, epoch and seq is at "
                f"{seen.entry.where}: at most one of them is authentic",
                seq=rec.signed.seq,
                where=rec.entry.where,
            )
        )
        # Keep the one whose signature verifies (decided later): remember both.
        by_id[(key[0], key[1] + "\x00conflict" + rec.entry.where, key[2])] = rec
    report.counts["duplicates_ignored"] = dupes
    return list(by_id.values())


def _order_key(rec: Rec) -> tuple[str, str, int]:
    return (rec.signed.agent, rec.signed.epoch, rec.signed.seq)


def _signature_findings(recs: list[Rec], report: Report) -> None:
    for rec in recs:
        if rec.signed.sig is None or not rec.sig_ok:
            what = (
                "has no valid signature" if rec.signed.sig is None else "signature does not match"
            )
            if rec.key_problem is not None and "unknown key" in rec.key_problem:
                code, text = "unknown_key", rec.key_problem
            elif rec.key_problem is not None and rec.signed.sig is not None:
                code, text = "untrusted_key", rec.key_problem
            else:
                code, text = "altered", f"{what}: the record was changed after it was signed"
            report.findings.append(
                Finding(PROBLEM, code, f"{rec.label}: {text}", rec.signed.seq, rec.entry.where)
            )
        elif rec.key_problem is not None:
            code = "retired_key" if "retired" in rec.key_problem else "untrusted_key"
            report.findings.append(
                Finding(
                    PROBLEM,
                    code,
                    f"{rec.label}: {rec.key_problem}",
                    rec.signed.seq,
                    rec.entry.where,
                )
            )


def _segment_start_ok(rec: Rec) -> bool:
    if rec.signed.kind == "gap":
        return True
    if rec.signed.kind == "key":
        return rec.data is None or rec.data.get("event") == "chain_start"
    return False


def _gap_text(rec: Rec) -> str:
    data = rec.data
    if rec.signed.kind == "gap" and data is not None:
        return (
            f"the device declared seq {data.get('seq_from')}-{data.get('seq_to')} lost "
            f"({data.get('reason')}: {data.get('detail')}; "
            f"{data.get('lost_messages')} messages created {data.get('from')} to {data.get('to')})"
        )
    if rec.signed.kind == "key" and data is not None:
        return f"chain started ({data.get('reason')})"
    return "segment start"


def _check_chain(recs: list[Rec], evidence: Evidence, report: Report) -> list[tuple[str, str, str]]:
    """Continuity per agent and epoch; returns the broken time spans ``(agent, from, to)``."""
    broken: list[tuple[str, str, str]] = []
    chained = [r for r in recs if r.signed.chained]
    groups: dict[tuple[str, str], list[Rec]] = defaultdict(list)
    for rec in chained:
        groups[(rec.signed.agent, rec.signed.epoch)].append(rec)
    # Epochs of one agent in the order they were used (their first record's time).
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][0], min(r.signed.ts for r in kv[1])))
    for (agent, epoch), items in ordered:
        items.sort(key=lambda r: r.signed.seq)
        n = len(items)
        link = [False] + [items[i].signed.prev == items[i - 1].signed.link for i in range(1, n)]
        isolated = _isolated(items, link)
        report.chain.append(
            f"agent {agent} epoch {epoch}: {n} chained records, "
            f"seq {items[0].signed.seq} ({items[0].signed.ts}) to "
            f"seq {items[-1].signed.seq} ({items[-1].signed.ts})"
        )
        first = items[0]
        if first.signed.prev is None:
            report.chain.append(f"  seq {first.signed.seq}: {_gap_text(first)}")
            if not _segment_start_ok(first):
                report.findings.append(
                    Finding(
                        PROBLEM,
                        "silent_restart",
                        f"{first.label}: the chain restarts here without a gap or chain_start "
                        "record",
                        first.signed.seq,
                        first.entry.where,
                    )
                )
        for i in range(1, n):
            a, b = items[i - 1], items[i]
            if link[i]:
                continue
            if b.signed.prev is None:
                report.chain.append(f"  seq {b.signed.seq}: new segment: {_gap_text(b)}")
                if _segment_start_ok(b):
                    report.findings.append(
                        Finding(
                            GAP,
                            "declared_gap",
                            f"chain segment ends at seq {a.signed.seq} ({a.signed.ts}) and a new "
                            f"one starts at {b.label}: {_gap_text(b)}",
                            b.signed.seq,
                            b.entry.where,
                        )
                    )
                else:
                    report.findings.append(
                        Finding(
                            PROBLEM,
                            "silent_restart",
                            f"{b.label}: the chain restarts after seq {a.signed.seq} without a "
                            "gap or chain_start record",
                            b.signed.seq,
                            b.entry.where,
                        )
                    )
                    broken.append((agent, a.signed.ts, b.signed.ts))
                continue
            if not a.sig_ok or (i - 1) in isolated:
                continue  # named already (altered or isolated)
            if i in isolated:
                if i + 1 < n and items[i + 1].signed.prev != a.signed.link:
                    _break(report, broken, agent, a, items[i + 1])
                continue
            _break(report, broken, agent, a, b)
        for i in sorted(isolated):
            rec = items[i]
            before = items[i - 1].signed.seq if i > 0 else None
            after = items[i + 1].signed.seq if i + 1 < n else None
            where = " and ".join(f"seq {s}" for s in (before, after) if s is not None)
            report.findings.append(
                Finding(
                    PROBLEM,
                    "isolated",
                    f"{rec.label}: valid signature, but not linked into the chain (neighbours "
                    f"{where}): a record replayed from another place in the chain or from an "
                    "older capture",
                    rec.signed.seq,
                    rec.entry.where,
                )
            )
            broken.append((agent, rec.signed.ts, rec.signed.ts))
        _check_tail(agent, epoch, items, evidence, report)
    return broken


def _isolated(items: list[Rec], link: list[bool]) -> set[int]:
    """Indexes of records linked to neither neighbour while the chain around them holds."""
    n = len(items)
    out: set[int] = set()
    if n < 3:
        return out
    for i, rec in enumerate(items):
        if not rec.sig_ok or rec.signed.prev is None:
            continue
        has_in = i > 0 and link[i]
        has_out = i + 1 < n and link[i + 1]
        if has_in or has_out:
            continue
        if i == 0 and not link[2]:
            continue  # the record after it is not linked either: a plain break
        if i == n - 1 and not link[n - 2]:
            continue
        out.add(i)
    return out


def _break(report: Report, broken: list[tuple[str, str, str]], agent: str, a: Rec, b: Rec) -> None:
    report.findings.append(
        Finding(
            PROBLEM,
            "chain_break",
            f"chain broken between seq {a.signed.seq} ({a.signed.ts}) and {b.label}: its link "
            f"does not match the record before it: chained records with seq {a.signed.seq + 1} "
            f"to {b.signed.seq - 1} are missing (deleted) or the order was changed; time span "
            f"{a.signed.ts} to {b.signed.ts}",
            b.signed.seq,
            b.entry.where,
        )
    )
    broken.append((agent, a.signed.ts, b.signed.ts))


def _check_tail(
    agent: str, epoch: str, items: list[Rec], evidence: Evidence, report: Report
) -> None:
    manifest = evidence.manifest
    if manifest is None:
        return
    tail = (
        manifest.get("chain", {}).get("last") if isinstance(manifest.get("chain"), dict) else None
    )
    if not isinstance(tail, dict) or tail.get("agent") != agent or tail.get("epoch") != epoch:
        return
    # The export also carries the header of the record just after the range (a stub), so
    # the manifest's last record is looked up by its seq, not taken as the last item.
    match = next((r for r in items if r.signed.seq == tail.get("seq")), None)
    if match is None or match.signed.link != tail.get("hash"):
        seq = tail.get("seq")
        before = [r for r in items if isinstance(seq, int) and r.signed.seq <= seq]
        last = before[-1] if before else items[-1]
        report.findings.append(
            Finding(
                PROBLEM,
                "truncated",
                f"the bundle's chain ends at seq {last.signed.seq} ({last.signed.ts}), but its "
                f"signed manifest lists seq {tail.get('seq')} as the last record: records were "
                "cut off",
                last.signed.seq,
                last.entry.where,
            )
        )


def verify(evidence: Evidence, trust: Trust) -> Report:
    """Run every check on ``evidence`` against the ``trust`` anchors."""
    report = Report(source=evidence.source)
    report.findings.extend(evidence.read_findings)
    recs = _dedupe(_parse(evidence, report), evidence.bundle, report)
    known, trusted = check_keys(recs, evidence, trust, report)
    check_manifest(evidence, known, trusted, report)
    _signature_findings(recs, report)
    broken = _check_chain(recs, evidence, report)
    check_windows(recs, evidence, report, broken)
    report.counts["signed_records"] = len(recs)
    report.counts["chained_records"] = sum(1 for r in recs if r.signed.chained)
    report.counts["stubs"] = sum(1 for r in recs if r.data is None)
    return report


def trusted_public_keys(raws: Iterable[bytes]) -> list[PublicKey]:
    """Public keys as :class:`PublicKey` (for printing kids and fingerprints)."""
    return [PublicKey(r) for r in raws]
