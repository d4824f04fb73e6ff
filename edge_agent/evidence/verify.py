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

Pure: the caller reads the files (:mod:`.bundle`); nothing here imports SQLite,
MQTT or the drivers, so the collector can run the same checks on what it stores.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_agent.evidence import proof
from edge_agent.evidence.canonical import canonical
from edge_agent.evidence.keys import PublicKey, fingerprint_of, kid_of, verify_signature
from edge_agent.evidence.proof import possession_message
from edge_agent.kpi.profile import KpiProfile
from edge_agent.kpi.sample import Sample
from edge_agent.kpi.timeutil import parse_instant

PROBLEM = "problem"
GAP = "gap"
NOTE = "note"

# Flags only the streaming calculator can set (it saw samples arrive late or a window
# opened late): a record carrying them is not expected to equal a batch recomputation.
STREAMING_FLAGS = frozenset({"late_data_ignored", "partial_history"})
_IDENTITY_FIELDS = frozenset(
    {
        "name",
        "window",
        "window_kind",
        "start",
        "end",
        "revision",
        "final",
        "machine",
        "spec_version",
        "profile_hash",
    }
)
PERIOD_KINDS = ("month", "contract")


def _window_of(data: Mapping[str, Any]) -> object:
    """A KPI record's window name (``window``; ``name`` in records of older agents)."""
    return data.get("window", data.get("name"))


@dataclass(frozen=True, slots=True)
class Entry:
    """One input item: an envelope as received, or a header-only stub of a bundle."""

    where: str  # "capture.jsonl line 12", "records.jsonl line 3"
    doc: Mapping[str, Any]
    stub: bool = False


@dataclass
class Evidence:
    """Everything read from a bundle or a capture, before any check."""

    source: str
    entries: list[Entry] = field(default_factory=list)
    bundle: bool = False
    manifest: Mapping[str, Any] | None = None
    #: Problems found while reading (truncated archive, manifest mismatch, bad lines).
    read_findings: list[Finding] = field(default_factory=list)
    #: Public keys the input carries (bundle ``keys/``); never trusted by themselves.
    keys: list[bytes] = field(default_factory=list)
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    #: Per machine, the time span ``[from, to)`` (UNIX s) the samples are complete for.
    sample_spans: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: Per machine, whether the samples are exactly what the calculator was fed.
    sample_exact: dict[str, bool] = field(default_factory=dict)
    profiles: dict[str, KpiProfile] = field(default_factory=dict)
    #: ``(kid, base64 signature)`` of the bundle manifest, when it is signed.
    manifest_sig: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One result line: ``severity`` is ``problem``, ``gap`` or ``note``; ``code`` is stable."""

    severity: str
    code: str
    message: str
    seq: int | None = None
    where: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "seq": self.seq,
            "where": self.where,
        }


@dataclass
class Trust:
    """The trust anchors: public keys (raw bytes) and fingerprints from the contract annex."""

    keys: list[bytes] = field(default_factory=list)
    fingerprints: set[str] = field(default_factory=set)

    def trusts(self, raw: bytes) -> bool:
        """Whether a public key is an anchor (given itself, or by its fingerprint)."""
        return raw in self.keys or fingerprint_of(raw) in self.fingerprints


@dataclass
class WindowVerdict:
    """The verdict on one KPI window (its highest revision)."""

    machine: str
    window: str
    start: str
    end: str
    revision: int
    seq: int
    verdict: str  # verified | authentic | altered | mismatch | untrusted
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dict(self.__dict__)


@dataclass
class Report:
    """What :func:`verify` found."""

    source: str
    findings: list[Finding] = field(default_factory=list)
    windows: list[WindowVerdict] = field(default_factory=list)
    periods: list[WindowVerdict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    chain: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        """Findings that make the evidence fail."""
        return [f for f in self.findings if f.severity == PROBLEM]

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """JSON form (``edge-agent verify --json``)."""
        return {
            "source": self.source,
            "verified": self.ok,
            "counts": self.counts,
            "chain": self.chain,
            "findings": [f.as_dict() for f in self.findings],
            "windows": [w.as_dict() for w in self.windows],
            "periods": [p.as_dict() for p in self.periods],
        }


@dataclass
class _Rec:
    entry: Entry
    signed: proof.Signed
    data: Mapping[str, Any] | None  # None for a stub
    sig_ok: bool = False
    key_problem: str | None = None

    @property
    def label(self) -> str:
        s = self.signed
        text = f"seq {s.seq} ({s.kind}"
        if self.data is not None:
            name = _window_of(self.data)
            if s.kind == "kpi" and isinstance(name, str):
                text += f" {self.data.get('machine', '?')} {name} rev {self.data.get('revision')}"
            elif s.kind == "stop":
                text += f" {self.data.get('machine', '?')} from {self.data.get('start')}"
            elif isinstance(self.data.get("event"), str):
                text += f" {self.data['event']}"
        return f"{text}, {self.entry.where})"


def _signed_kind(kind: str, data: Mapping[str, Any]) -> bool:
    return proof.policy(kind, data) is not None


def _parse(evidence: Evidence, report: Report) -> list[_Rec]:
    """Envelopes and stubs -> records; unsigned records of signed kinds are problems."""
    out: list[_Rec] = []
    skipped = 0
    for entry in evidence.entries:
        doc = entry.doc
        try:
            if entry.stub:
                signed = proof.from_stub(doc)
                out.append(_Rec(entry, signed, None))
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
        out.append(_Rec(entry, signed_or_none, data if isinstance(data, dict) else {}))
    report.counts["not_signed_kinds"] = skipped
    return out


def _dedupe(recs: list[_Rec], bundle: bool, report: Report) -> list[_Rec]:
    by_id: dict[tuple[str, str, int], _Rec] = {}
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


def _order_key(rec: _Rec) -> tuple[str, str, int]:
    return (rec.signed.agent, rec.signed.epoch, rec.signed.seq)


def _decode_key(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _check_keys(
    recs: list[_Rec], evidence: Evidence, trust: Trust, report: Report
) -> tuple[dict[str, bytes], set[str]]:
    """Signatures, walking each agent's records in seq order so rotations take effect.

    Returns the public keys known by kid and the kids trusted at the end.
    """
    known: dict[str, bytes] = {kid_of(k): k for k in [*trust.keys, *evidence.keys]}
    for rec in recs:
        data = rec.data
        if rec.signed.kind == "key" and data is not None:
            for part in ("key", "old_key"):
                info = data.get(part)
                found = _decode_key(info.get("public_key")) if isinstance(info, dict) else None
                if found is not None:
                    known.setdefault(kid_of(found), found)
    trusted: set[str] = {kid for kid, k in known.items() if trust.trusts(k)}
    retired: dict[str, int] = {}
    for rec in sorted(recs, key=_order_key):
        s = rec.signed
        raw = known.get(s.kid)
        if raw is None:
            rec.key_problem = (
                f"signed by an unknown key (kid {s.kid}): neither a trusted key nor one this "
                "evidence announces (if it is the device's, give its public key with --key)"
            )
        elif s.kid not in trusted:
            rec.key_problem = (
                f"signed by a key that is not trusted (kid {s.kid}, "
                f"fingerprint {fingerprint_of(raw)}): not the key of the contract annex"
            )
        elif s.kid in retired and s.seq > retired[s.kid]:
            rec.key_problem = (
                f"signed by key {s.kid}, retired by the rotation at seq {retired[s.kid]}"
            )
        if raw is not None and s.sig is not None:
            rec.sig_ok = verify_signature(raw, s.sig, s.header_bytes)
        if not rec.sig_ok or rec.key_problem is not None:
            continue
        if s.kind == "key" and rec.data is not None and rec.data.get("event") == "rotated":
            _accept_rotation(rec, known, trusted, retired, report)
    return known, trusted


def _accept_rotation(
    rec: _Rec,
    known: dict[str, bytes],
    trusted: set[str],
    retired: dict[str, int],
    report: Report,
) -> None:
    data = rec.data or {}
    new = data.get("key")
    raw = _decode_key(new.get("public_key")) if isinstance(new, dict) else None
    sig = proof.decode_sig(str(data.get("possession", "")))
    if raw is None or sig is None:
        report.findings.append(
            Finding(
                PROBLEM,
                "rotation",
                f"{rec.label}: key rotation without a usable new key",
                rec.signed.seq,
                rec.entry.where,
            )
        )
        return
    new_kid = kid_of(raw)
    message = possession_message(rec.signed.agent, rec.signed.kid, new_kid)
    if not verify_signature(raw, sig, message):
        report.findings.append(
            Finding(
                PROBLEM,
                "rotation",
                f"{rec.label}: the new key's proof of possession does not verify",
                rec.signed.seq,
                rec.entry.where,
            )
        )
        return
    known[new_kid] = raw
    trusted.add(new_kid)
    retired[rec.signed.kid] = rec.signed.seq
    report.chain.append(
        f"key rotated at seq {rec.signed.seq} ({rec.signed.ts}): {rec.signed.kid} -> {new_kid} "
        f"(fingerprint {fingerprint_of(raw)})"
    )


def _signature_findings(recs: list[_Rec], report: Report) -> None:
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


def _segment_start_ok(rec: _Rec) -> bool:
    if rec.signed.kind == "gap":
        return True
    if rec.signed.kind == "key":
        return rec.data is None or rec.data.get("event") == "chain_start"
    return False


def _gap_text(rec: _Rec) -> str:
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


def _check_chain(
    recs: list[_Rec], evidence: Evidence, report: Report
) -> list[tuple[str, str, str]]:
    """Continuity per agent and epoch; returns the broken time spans ``(agent, from, to)``."""
    broken: list[tuple[str, str, str]] = []
    chained = [r for r in recs if r.signed.chained]
    groups: dict[tuple[str, str], list[_Rec]] = defaultdict(list)
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


def _isolated(items: list[_Rec], link: list[bool]) -> set[int]:
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


def _break(
    report: Report, broken: list[tuple[str, str, str]], agent: str, a: _Rec, b: _Rec
) -> None:
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
    agent: str, epoch: str, items: list[_Rec], evidence: Evidence, report: Report
) -> None:
    manifest = evidence.manifest
    if manifest is None:
        return
    tail = (
        manifest.get("chain", {}).get("last") if isinstance(manifest.get("chain"), dict) else None
    )
    if not isinstance(tail, dict) or tail.get("agent") != agent or tail.get("epoch") != epoch:
        return
    last = items[-1]
    if last.signed.seq != tail.get("seq") or last.signed.link != tail.get("hash"):
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


def _close(a: Any, b: Any, name: str) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], name) for k in a)
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return bool(a == b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        tol = 0.0005 if name.endswith("_s") or name == "downtime_by_code" else 1e-6
        return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=tol)
    return bool(a == b)


def compare(published: Mapping[str, Any], recomputed: Mapping[str, Any]) -> list[str]:
    """Fields whose published value differs from the recomputed one, described."""
    out: list[str] = []
    for key, value in recomputed.items():
        if key in _IDENTITY_FIELDS:
            continue
        if key == "pending_stop_s" and key not in published and not value:
            continue  # records of agents before pending_stop_s (always 0 in a final record)
        mine = published.get(key)
        if key == "flags":
            if set(mine or ()) - STREAMING_FLAGS != set(value or ()):
                out.append(f"flags published {sorted(mine or ())} recomputed {sorted(value)}")
            continue
        if not _close(mine, value, key):
            out.append(f"{key} published {mine!r} recomputed {value!r}")
    return out


def _windows(
    recs: list[_Rec],
    evidence: Evidence,
    report: Report,
    broken: list[tuple[str, str, str]],
) -> None:
    from edge_agent.kpi.replay import compute_records

    finals: dict[tuple[str, str], _Rec] = {}
    altered: set[tuple[str, str]] = set()
    provisional = 0
    for rec in recs:
        if rec.signed.kind != "kpi" or rec.data is None:
            continue
        key = (str(rec.data.get("machine", "")), str(_window_of(rec.data) or ""))
        if not rec.signed.chained:
            provisional += 1
            continue
        if not rec.sig_ok or rec.key_problem is not None:
            altered.add(key)
        best = finals.get(key)
        rank = (int(rec.data.get("revision", 0) or 0), rec.signed.seq)
        if best is None or rank > (int((best.data or {}).get("revision", 0) or 0), best.signed.seq):
            finals[key] = rec
    report.counts["provisional_kpi_records"] = provisional
    # Recompute per machine and profile in one pass over the samples.
    todo: dict[tuple[str, str], list[_Rec]] = defaultdict(list)
    verdicts: dict[tuple[str, str], WindowVerdict] = {}
    for key, rec in sorted(finals.items()):
        data = rec.data or {}
        verdict = WindowVerdict(
            machine=key[0],
            window=key[1],
            start=str(data.get("start")),
            end=str(data.get("end")),
            revision=int(data.get("revision", 0) or 0),
            seq=rec.signed.seq,
            verdict="authentic",
        )
        verdicts[key] = verdict
        if key in altered:
            verdict.verdict = "altered"
            verdict.detail = "a record of this window failed its signature check"
            continue
        reason = _recompute_blocker(key[0], data, evidence)
        if reason:
            verdict.detail = f"signature and chain checked; not recomputed: {reason}"
            continue
        todo[(key[0], str(data.get("profile_hash")))].append(rec)
    for (machine, phash), items in todo.items():
        profile = evidence.profiles[phash]
        windows = []
        for rec in items:
            data = rec.data or {}
            windows.append(
                (
                    str(_window_of(data)),
                    parse_instant(str(data["start"])) / 1000.0,
                    parse_instant(str(data["end"])) / 1000.0,
                )
            )
        records = compute_records(profile, evidence.samples[machine], windows)
        exact = evidence.sample_exact.get(machine, False)
        for rec in items:
            data = rec.data or {}
            verdict = verdicts[(machine, str(_window_of(data)))]
            diffs = compare(data, records[str(_window_of(data))].as_dict())
            if not exact:
                verdict.detail = (
                    "signature and chain checked; recomputed from approximate samples (raw "
                    "readings): " + ("; ".join(diffs[:3]) if diffs else "agrees")
                )
                continue
            if diffs:
                verdict.verdict = "mismatch"
                verdict.detail = "; ".join(diffs[:6])
                report.findings.append(
                    Finding(
                        PROBLEM,
                        "mismatch",
                        f"{rec.label}: numbers differ from the recomputation from the bundle's "
                        f"samples: {verdict.detail}",
                        rec.signed.seq,
                        rec.entry.where,
                    )
                )
            else:
                verdict.verdict = "verified"
                verdict.detail = "signature, chain and recomputation agree"
    report.windows = [verdicts[k] for k in sorted(verdicts)]
    report.periods = [_period(v, report.windows, broken) for v in report.windows if _is_period(v)]


def _recompute_blocker(machine: str, data: Mapping[str, Any], evidence: Evidence) -> str:
    if machine not in evidence.samples:
        return "no samples for this machine in the evidence"
    phash = str(data.get("profile_hash"))
    if phash not in evidence.profiles:
        return f"the profile {phash[:12]}... is not in the evidence"
    span = evidence.sample_spans.get(machine)
    try:
        start = parse_instant(str(data.get("start"))) / 1000.0
        end = parse_instant(str(data.get("end"))) / 1000.0
    except ValueError:
        return "window start/end unreadable"
    if span is None or start < span[0] or end > span[1]:
        return "the samples do not cover the whole window"
    return ""


def _is_period(v: WindowVerdict) -> bool:
    return v.window.split(":", 1)[0] in PERIOD_KINDS


def _period(
    period: WindowVerdict, windows: Sequence[WindowVerdict], broken: list[tuple[str, str, str]]
) -> WindowVerdict:
    inside = [
        w
        for w in windows
        if w.machine == period.machine and w is not period and period.start <= w.start < period.end
    ]
    bad = [w for w in inside if w.verdict in ("altered", "mismatch")]
    breaks = [b for b in broken if b[1] < period.end and b[2] > period.start]
    out = WindowVerdict(**period.__dict__)
    if period.verdict in ("altered", "mismatch"):
        out.detail = f"the period's own record: {period.verdict}"
    elif bad or breaks:
        out.verdict = "not verified"
        out.detail = (
            f"{len(bad)} window(s) inside altered or mismatching, {len(breaks)} chain break(s) "
            "in its time span"
        )
    else:
        out.detail = (
            f"{period.verdict}; {len(inside)} window(s) inside, none altered, chain unbroken"
        )
    return out


def _check_manifest(
    evidence: Evidence, known: Mapping[str, bytes], trusted: set[str], report: Report
) -> None:
    if not evidence.bundle or evidence.manifest is None:
        return
    if evidence.manifest_sig is None:
        report.findings.append(
            Finding(
                PROBLEM,
                "manifest_unsigned",
                "the bundle's manifest is not signed (manifest.sig missing): records cut off "
                "at the end of the range could not be noticed",
            )
        )
        return
    kid, sig_text = evidence.manifest_sig
    raw = known.get(kid)
    sig = proof.decode_sig(sig_text)
    message = canonical(dict(evidence.manifest))
    if raw is None or sig is None or not verify_signature(raw, sig, message):
        report.findings.append(
            Finding(
                PROBLEM,
                "manifest_altered",
                f"the bundle's manifest signature (key {kid}) does not verify: the manifest "
                "was changed after export",
            )
        )
    elif kid not in trusted:
        report.findings.append(
            Finding(
                PROBLEM,
                "untrusted_key",
                f"the bundle's manifest is signed by key {kid}, which is not trusted",
            )
        )


def verify(evidence: Evidence, trust: Trust) -> Report:
    """Run every check on ``evidence`` against the ``trust`` anchors."""
    report = Report(source=evidence.source)
    report.findings.extend(evidence.read_findings)
    recs = _dedupe(_parse(evidence, report), evidence.bundle, report)
    known, trusted = _check_keys(recs, evidence, trust, report)
    _check_manifest(evidence, known, trusted, report)
    _signature_findings(recs, report)
    broken = _check_chain(recs, evidence, report)
    _windows(recs, evidence, report, broken)
    report.counts["signed_records"] = len(recs)
    report.counts["chained_records"] = sum(1 for r in recs if r.signed.chained)
    report.counts["stubs"] = sum(1 for r in recs if r.data is None)
    return report


def trusted_public_keys(raws: Iterable[bytes]) -> list[PublicKey]:
    """Public keys as :class:`PublicKey` (for printing kids and fingerprints)."""
    return [PublicKey(r) for r in raws]
