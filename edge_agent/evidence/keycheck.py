"""Verification, keys: which key signed each record, trust, rotations, the manifest.

Walks each agent's records in sequence order so a signed rotation retires the old
key and trusts the new one from that record on; checks the bundle manifest's
signature. Part of :func:`edge_agent.evidence.verify.verify`; pure.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from edge_agent.evidence import proof
from edge_agent.evidence.canonical import canonical
from edge_agent.evidence.keys import fingerprint_of, kid_of, verify_signature
from edge_agent.evidence.proof import possession_message
from edge_agent.evidence.verdicts import PROBLEM, Evidence, Finding, Rec, Report, Trust


def _order_key(rec: Rec) -> tuple[str, str, int]:
    return (rec.signed.agent, rec.signed.epoch, rec.signed.seq)


def _decode_key(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return raw if len(raw) == 32 else None


def check_keys(
    recs: list[Rec], evidence: Evidence, trust: Trust, report: Report
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
    rec: Rec,
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


def check_manifest(
    evidence: Evidence, known: Mapping[str, bytes], trusted: set[str], report: Report
) -> None:
    """The bundle manifest's signature: present, valid, by a trusted key (else findings)."""
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
