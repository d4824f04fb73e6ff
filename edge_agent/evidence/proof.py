"""What is signed: the record header, the envelope's ``proof`` object, and which kinds carry one.

A signed message is published as the usual envelope plus one field::

    {"v":2,"kind":"kpi","agent":"gw-1","epoch":"5f3a9c1e","seq":812,
     "ts":"2026-11-26T14:00:05.120Z","data":{...},
     "proof":{"kid":"3f2a9c1e0b7d4a55","prev":"9b1e...64 hex","sig":"base64 (88 chars)"}}

The signature is Ed25519 over the RFC 8785 canonical bytes of the **header**::

    {"agent":..., "data_sha256": sha256(JCS(data)), "epoch":..., "format":"edge-agent-proof/1",
     "kid":..., "kind":..., "prev": <hex or null>, "seq":..., "ts":...}

so the header binds the record's content (through the digest of ``data``), its
identity and position (agent, epoch, seq), its time and the previous link. The
**link hash** of a record is the SHA-256 (hex) of its canonical header; the next
chained record carries it as ``prev``. ``prev`` is ``null`` only at the start of
a chain segment (first start, or after a lost database: the segment then starts
with the signed ``gap`` record that says what is unknown). A record that is
signed but deliberately *not* chained (a provisional "so far" KPI record, see
:func:`policy`) has no ``prev`` key in its header nor in its proof.

Because the header holds only a digest of ``data``, a bundle can carry the
header alone for a record it leaves out (another machine's), and the chain stays
checkable without disclosing that record. Pure code, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from edge_agent.evidence.canonical import canonical, digest, sha256_hex
from edge_agent.evidence.keys import PublicKey

PROOF_FORMAT = "edge-agent-proof/1"
#: Envelope versions whose signed messages this module reads.
ENVELOPE_VERSIONS = (2,)

#: Kinds whose every record is chained (besides final KPI records).
CHAINED_KINDS = frozenset(
    {
        "stop",  # stop events and their updates (end, acknowledgement revisions)
        "gap",  # lost messages: a recovered database starts a new segment with it
        "config",  # configuration audit at start and reload
        "key",  # chain start and key rotation
        "interval",  # state intervals, when published
        "contract_alert",  # contract alerts and period records (issue 15)
        "contract_period",
    }
)

Policy = Literal["chain", "sign"]


def policy(kind: str, data: Mapping[str, Any]) -> Policy | None:
    """How a record is protected: chained and signed, signed only, or neither.

    * ``kpi`` records with ``final: true`` (closing records and every revision) are
      chained; "so far" records (``final: false``) are signed but not chained: they
      are provisional, published every reporting interval, and would make a month's
      chain (and bundle) a hundred times longer without adding evidence;
    * the kinds of :data:`CHAINED_KINDS` and any other ``contract*`` kind are chained,
      except the contract status (``contract``): like a "so far" record it is provisional
      and published every reporting interval, so it is signed, not chained (its period
      record is chained);
    * telemetry, health and status are neither (they do not count for a contract).
    """
    if kind == "kpi":
        return "chain" if data.get("final") is True else "sign"
    if kind == "contract":
        return "sign"
    if kind in CHAINED_KINDS or kind.startswith("contract"):
        return "chain"
    return None


class _Unchained:
    """Marker: the header has no ``prev`` (signed, not chained)."""


UNCHAINED = _Unchained()


def header(
    *,
    agent: str,
    epoch: str,
    seq: int,
    kind: str,
    ts: str,
    data_sha256: str,
    kid: str,
    prev: str | _Unchained | None,
) -> dict[str, Any]:
    """The header object that is canonicalised and signed."""
    out: dict[str, Any] = {
        "agent": agent,
        "data_sha256": data_sha256,
        "epoch": epoch,
        "format": PROOF_FORMAT,
        "kid": kid,
        "kind": kind,
        "seq": seq,
        "ts": ts,
    }
    if not isinstance(prev, _Unchained):
        out["prev"] = prev
    return out


def link_hash(header_bytes: bytes) -> str:
    """The hash the next chained record carries as ``prev``."""
    return sha256_hex(header_bytes)


def encode_sig(signature: bytes) -> str:
    """Standard base64 with padding (what ``base64 -d`` reads)."""
    return base64.b64encode(signature).decode("ascii")


def decode_sig(text: str) -> bytes | None:
    """The signature bytes, or None when ``text`` is not 64 bytes of base64."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return raw if len(raw) == 64 else None


def proof_json(kid: str, prev: str | _Unchained | None, sig: str) -> str:
    """The envelope's ``proof`` object as compact JSON text (stored with the outbox row)."""
    doc: dict[str, Any] = {"kid": kid}
    if not isinstance(prev, _Unchained):
        doc["prev"] = prev
    doc["sig"] = sig
    return json.dumps(doc, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Signed:
    """A received record reduced to what verification needs."""

    agent: str
    epoch: str
    seq: int
    kind: str
    ts: str
    kid: str
    chained: bool
    prev: str | None
    sig: bytes | None
    header_bytes: bytes
    link: str

    @property
    def identity(self) -> tuple[str, str, int]:
        """``(agent, epoch, seq)``: unique per record."""
        return (self.agent, self.epoch, self.seq)


class ProofError(ValueError):
    """A message's envelope or proof is malformed (the message says which field)."""


def _field(doc: Mapping[str, Any], key: str, kind: type) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ProofError(f"{key} missing or not a {kind.__name__}")
    return value


def from_envelope(doc: Mapping[str, Any]) -> Signed | None:
    """The signed header of a received envelope; None when it carries no ``proof``.

    Raises:
        ProofError: The envelope or proof is malformed, or ``data`` is not I-JSON.
    """
    proof = doc.get("proof")
    if proof is None:
        return None
    if not isinstance(proof, dict):
        raise ProofError("proof is not an object")
    if doc.get("v") not in ENVELOPE_VERSIONS:
        # The envelope version is not in the signed header: only the ones whose fields
        # mean what the header says are accepted.
        raise ProofError(f"envelope version v={doc.get('v')!r} is not one that carries a proof")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise ProofError("data missing or not an object")
    kid = _field(proof, "kid", str)
    sig_text = _field(proof, "sig", str)
    chained = "prev" in proof
    prev = proof.get("prev")
    if chained and prev is not None and not isinstance(prev, str):
        raise ProofError("proof.prev is neither a hash nor null")
    try:
        data_sha = digest(data)
    except ValueError as exc:
        raise ProofError(f"data cannot be canonicalised: {exc}") from None
    return from_header_fields(
        agent=_field(doc, "agent", str),
        epoch=_field(doc, "epoch", str),
        seq=_field(doc, "seq", int),
        kind=_field(doc, "kind", str),
        ts=_field(doc, "ts", str),
        data_sha256=data_sha,
        kid=kid,
        prev=prev if chained else UNCHAINED,
        sig=sig_text,
    )


def from_header_fields(
    *,
    agent: str,
    epoch: str,
    seq: int,
    kind: str,
    ts: str,
    data_sha256: str,
    kid: str,
    prev: str | _Unchained | None,
    sig: str,
) -> Signed:
    """Build a :class:`Signed` from header fields (a full record's or a bundle stub's)."""
    head = header(
        agent=agent,
        epoch=epoch,
        seq=seq,
        kind=kind,
        ts=ts,
        data_sha256=data_sha256,
        kid=kid,
        prev=prev,
    )
    raw = canonical(head)
    chained = not isinstance(prev, _Unchained)
    return Signed(
        agent=agent,
        epoch=epoch,
        seq=seq,
        kind=kind,
        ts=ts,
        kid=kid,
        chained=chained,
        prev=None if isinstance(prev, _Unchained) else prev,
        sig=decode_sig(sig),
        header_bytes=raw,
        link=link_hash(raw),
    )


def key_info(key: PublicKey) -> dict[str, str]:
    """How a ``key`` record names a public key (raw key in standard base64)."""
    return {
        "kid": key.kid,
        "fingerprint": key.fingerprint,
        "public_key": base64.b64encode(key.raw).decode("ascii"),
    }


def possession_message(agent: str, old_kid: str, new_kid: str) -> bytes:
    """What the new key signs in a rotation record to prove the device holds it."""
    return canonical(
        {"agent": agent, "format": "edge-agent-rotation/1", "new": new_kid, "old": old_kid}
    )


def stub_from_envelope(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The header-only form of a signed envelope (a bundle's ``headers.jsonl`` line)."""
    proof = doc["proof"]
    out: dict[str, Any] = {
        "agent": doc["agent"],
        "epoch": doc["epoch"],
        "seq": doc["seq"],
        "kind": doc["kind"],
        "ts": doc["ts"],
        "data_sha256": digest(doc["data"]),
        "kid": proof["kid"],
    }
    if "prev" in proof:
        out["prev"] = proof["prev"]
    out["sig"] = proof["sig"]
    return out


def from_stub(doc: Mapping[str, Any]) -> Signed:
    """A :class:`Signed` from a header-only line.

    Raises:
        ProofError: A field is missing or of the wrong type.
    """
    prev = doc.get("prev")
    if "prev" in doc and prev is not None and not isinstance(prev, str):
        raise ProofError("prev is neither a hash nor null")
    return from_header_fields(
        agent=_field(doc, "agent", str),
        epoch=_field(doc, "epoch", str),
        seq=_field(doc, "seq", int),
        kind=_field(doc, "kind", str),
        ts=_field(doc, "ts", str),
        data_sha256=_field(doc, "data_sha256", str),
        kid=_field(doc, "kid", str),
        prev=prev if "prev" in doc else UNCHAINED,
        sig=_field(doc, "sig", str),
    )
