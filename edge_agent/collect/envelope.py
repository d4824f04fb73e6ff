"""Decode and check one MQTT payload: a :class:`Message` to store, or a :class:`Rejected`.

Envelope versions read (``docs/pipeline.md``, PAYLOAD-DECISIONS of this round):

* v1: ``{v, kind, agent, seq, ts, data}``; its numbering epoch is ``""``.
* v2: the same plus ``epoch``, a short string naming the agent's sequence-numbering epoch;
  sequence numbers are unique within ``(agent, epoch)``; records that count for a contract
  also carry ``proof`` (signature and chain link, ``docs/evidence.md``; checked by
  :mod:`edge_agent.evidence.verify`, not here).

``status`` messages carry no ``seq``; every other kind must. Checks made here, before any
schema and before PostgreSQL sees the message, so that one bad message can never fail a
whole batch: valid UTF-8 JSON object, no NaN/Infinity, no NUL character or lone
surrogate in any string (PostgreSQL text and jsonb refuse them), ``seq`` within bigint,
``ts`` a real RFC 3339 instant, identifiers of bounded length. Old ``data`` shapes are
upgraded by :mod:`edge_agent.collect.legacy`; then the kind's schema decides
(:mod:`edge_agent.collect.schemas`). Pure code, no I/O.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Protocol

from edge_agent.collect import legacy
from edge_agent.collect.timefmt import parse_instant

SUPPORTED_VERSIONS = (1, 2)
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
MAX_AGENT_CHARS = 200
MAX_EPOCH_CHARS = 64
MAX_KIND_CHARS = 64
MAX_SEQ = 2**63 - 1
_ENVELOPE_KEYS = {1: {"v", "kind", "agent", "seq", "ts", "data"}}
_ENVELOPE_KEYS[2] = _ENVELOPE_KEYS[1] | {"epoch", "proof"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A checked message, ready to store."""

    version: int
    kind: str
    agent: str
    epoch: str
    seq: int | None  # None only for kind "status"
    ts: dt.datetime
    data: dict[str, Any]
    upgraded: bool = False  # data was an old shape, rewritten by legacy.upgrade
    validated: bool = True  # a schema checked it (False: no schema for this kind)
    signed: bool = False  # the envelope carries a proof object (kept in signed_records)
    chained: bool = False  # ... whose proof links to the previous record (has prev)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    """A message that goes to quarantine, with whatever identity could be read."""

    reason: str
    agent: str | None = None
    kind: str | None = None
    epoch: str | None = None
    seq: int | None = None


class Checker(Protocol):
    """What classify needs from a schema set (see :class:`~.schemas.SchemaSet`)."""

    @property
    def kinds(self) -> frozenset[str]: ...  # noqa: D102

    def check(self, message: dict[str, Any]) -> str | None: ...  # noqa: D102


class _BadNumber(ValueError):
    pass


def _no_constant(token: str) -> float:
    raise _BadNumber(f"non-finite number {token}")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _BadNumber(f"number out of range {text[:40]}")
    return value


def _bad_string(obj: Any) -> str | None:
    """The first string (key or value) PostgreSQL cannot store, described; else None."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "NUL character in a string"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "lone surrogate in a string"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def decode(payload: bytes) -> dict[str, Any] | str:
    """The JSON object of a payload, or the reason it is not a storable one."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}"
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: {exc.reason} at byte {exc.start}"
    try:
        doc = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except _BadNumber as exc:
        return f"not storable JSON: {exc}"
    except RecursionError:
        return "not JSON: nested too deeply"
    except ValueError as exc:
        return f"not JSON: {str(exc)[:120]}"
    if not isinstance(doc, dict):
        return f"not a JSON object but {type(doc).__name__}"
    # JSON can carry a NUL or a lone surrogate only as a \u escape: walk only then.
    if "\\u" in text and (problem := _bad_string(doc)) is not None:
        return problem
    return doc


def _text(doc: dict[str, Any], key: str, limit: int) -> str | None:
    value = doc.get(key)
    if isinstance(value, str) and 0 < len(value) <= limit:
        return value
    return None


def check_envelope(doc: dict[str, Any]) -> Message | Rejected:
    """The envelope's fields checked (data not yet validated against a schema)."""
    agent = _text(doc, "agent", MAX_AGENT_CHARS)
    kind = _text(doc, "kind", MAX_KIND_CHARS)
    seq_raw = doc.get("seq")
    seq = seq_raw if isinstance(seq_raw, int) and not isinstance(seq_raw, bool) else None
    epoch_raw = doc.get("epoch")
    epoch = epoch_raw if isinstance(epoch_raw, str) and len(epoch_raw) <= MAX_EPOCH_CHARS else None

    def reject(reason: str) -> Rejected:
        return Rejected(
            reason=reason,
            agent=agent,
            kind=kind,
            epoch=epoch if epoch is not None else ("" if doc.get("v") == 1 else None),
            seq=seq if seq is not None and 1 <= seq <= MAX_SEQ else None,
        )

    raw_version = doc.get("v")
    version = (
        raw_version if isinstance(raw_version, int) and not isinstance(raw_version, bool) else 0
    )
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        return reject(f"envelope: unsupported version v={raw_version!r} (reads {supported})")
    unknown = sorted(set(doc) - _ENVELOPE_KEYS[version])
    if unknown:
        return reject(f"envelope: unknown field(s) for v{version}: {', '.join(unknown)}")
    if agent is None:
        return reject(f"envelope: agent must be a string of 1 to {MAX_AGENT_CHARS} characters")
    if kind is None:
        return reject(f"envelope: kind must be a string of 1 to {MAX_KIND_CHARS} characters")
    if version >= 2 and epoch is None:
        return reject(f"envelope: v{version} needs epoch, a string of at most {MAX_EPOCH_CHARS}")
    if kind == "status":
        if "seq" in doc:
            return reject("envelope: status messages carry no seq")
    elif seq is None or not 1 <= seq <= MAX_SEQ:
        return reject(f"envelope: seq must be an integer from 1 to {MAX_SEQ}")
    ts = parse_instant(doc.get("ts"))
    if ts is None:
        return reject("envelope: ts must be an RFC 3339 instant")
    data = doc.get("data")
    if not isinstance(data, dict):
        return reject("envelope: data must be an object")
    return Message(
        version=version,
        kind=kind,
        agent=agent,
        epoch=epoch if version >= 2 and epoch is not None else "",
        seq=None if kind == "status" else seq,
        ts=ts,
        data=data,
    )


def classify(payload: bytes, schemas: Checker) -> Message | Rejected:
    """Decode, check the envelope, upgrade an old data shape, validate against the schema."""
    doc = decode(payload)
    if isinstance(doc, str):
        return Rejected(reason=doc)
    checked = check_envelope(doc)
    if isinstance(checked, Rejected):
        return checked
    upgraded = legacy.upgrade(checked.kind, checked.data)
    if upgraded is not None:
        doc = {**doc, "data": upgraded}
    problem = schemas.check(doc)
    if problem is not None:
        return Rejected(
            reason=problem,
            agent=checked.agent,
            kind=checked.kind,
            epoch=checked.epoch,
            seq=checked.seq,
        )
    return Message(
        version=checked.version,
        kind=checked.kind,
        agent=checked.agent,
        epoch=checked.epoch,
        seq=checked.seq,
        ts=checked.ts,
        data=upgraded if upgraded is not None else checked.data,
        upgraded=upgraded is not None,
        validated=checked.kind in schemas.kinds,
        signed=isinstance(proof := doc.get("proof"), dict),
        chained=isinstance(proof, dict) and "prev" in proof,
    )
