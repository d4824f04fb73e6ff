"""Write an evidence bundle (:mod:`.bundle` describes the format) from the agent's buffer.

Reads the buffer through a read-only connection in one snapshot (safe while the
agent runs), takes the chained records created in ``[start, end)`` from the
``evidence`` table exactly as they were published, the state intervals, the
samples from a :class:`~edge_agent.evidence.samples.SampleSource`, the KPI
profiles the records name (from the signed ``config`` records, else the current
configuration), and the device's public keys, and signs the manifest with the
device key when it can read it. Records of other machines inside the range, and
the records just before and after it, go in as signed headers only.
"""

from __future__ import annotations

import json
import sqlite3
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent import __version__
from edge_agent.evidence import bundle, proof
from edge_agent.evidence.audit import profiles_of
from edge_agent.evidence.canonical import canonical, sha256_hex
from edge_agent.evidence.keys import KeyFileError, KeyStore
from edge_agent.evidence.samples import SampleSource
from edge_agent.kpi.profile import SPEC_VERSION, KpiProfile, profile_hash
from edge_agent.kpi.sample import sample_to_json
from edge_agent.kpi.timeutil import format_instant

README_TEXT = """\
Evidence bundle of edge-agent {version} (format {fmt}).

Agent {agent}, machine {machine}, from {start} to {end}.

To check it, install edge-agent on any computer (pip install edge-agent) and run:

    edge-agent verify {name} --key FINGERPRINT

where FINGERPRINT is the device key fingerprint written in your contract annex
(or --key device.pem with the public key file). The result is a verdict per
KPI window and per contract period; exit code 0 means everything verified.

What is inside: manifest.json (contents and SHA-256 of every file, signed in
manifest.sig), records.jsonl (the signed records as published), headers.jsonl
(signed headers of records left out), intervals.jsonl, samples/ (the
calculator's input, edge-agent replay format), profiles/ (KPI parameters),
keys/ (the device's public keys). See docs/evidence.md.
"""


@dataclass
class ExportResult:
    """What was written."""

    path: Path
    records: int = 0
    headers: int = 0
    bytes: int = 0
    signed: bool = False
    members: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _rows(con: sqlite3.Connection, where: str, params: Iterable[Any]) -> list[tuple[Any, ...]]:
    return list(
        con.execute(
            f"SELECT seq, kind, created, machine, envelope FROM evidence WHERE {where}",  # noqa: S608
            tuple(params),
        )
    )


def _stub(envelope_text: str) -> dict[str, Any]:
    return proof.stub_from_envelope(json.loads(envelope_text))


def _jsonl(items: Iterable[Any]) -> bytes:
    return "".join(
        (item if isinstance(item, str) else json.dumps(item, separators=(",", ":"))) + "\n"
        for item in items
    ).encode("utf-8")


def export_bundle(
    *,
    db: Path,
    out: Path,
    start: float,
    end: float,
    agent: str,
    keys: KeyStore | None,
    machine: str | None = None,
    samples: SampleSource | None = None,
    current_profiles: Mapping[str, KpiProfile] | None = None,
    clock: Any = time.time,
) -> ExportResult:
    """Write the bundle for ``[start, end)`` to ``out``.

    Raises:
        sqlite3.Error: The buffer cannot be read.
        OSError: The output cannot be written.
    """
    from edge_agent.buffer.schema import connect

    result = ExportResult(path=out)
    con = connect(db, read_only=True)
    try:
        con.execute("BEGIN")  # one snapshot for the whole export
        members = _collect(con, result, start, end, agent, machine, samples, current_profiles)
    finally:
        con.close()
    if keys is not None:
        for key in keys.public_keys():
            members[f"keys/{key.kid}.pem"] = key.pem().encode("ascii")
    members[bundle.README] = README_TEXT.format(
        version=__version__,
        fmt=bundle.FORMAT,
        agent=agent,
        machine=machine or "all",
        start=format_instant(round(start * 1000)),
        end=format_instant(round(end * 1000)),
        name=out.name,
    ).encode("utf-8")
    manifest = members.pop("\x00manifest")
    doc = json.loads(manifest)
    doc["created"] = format_instant(round(clock() * 1000))
    doc["members"] = {
        name: {"sha256": sha256_hex(raw), "bytes": len(raw)}
        for name, raw in sorted(members.items())
    }
    manifest_bytes = json.dumps(doc, indent=1).encode("utf-8")
    signature: bytes | None = None
    if keys is not None:
        try:
            active = keys.active()
        except KeyFileError as exc:
            result.notes.append(f"manifest not signed: {exc}")
            active = None
        if active is not None:
            signature = json.dumps(
                {"kid": active.kid, "sig": proof.encode_sig(active.sign(canonical(doc)))}
            ).encode("ascii")
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, raw in sorted(members.items()):
            archive.writestr(name, raw)
        archive.writestr(bundle.MANIFEST, manifest_bytes)
        if signature is not None:
            archive.writestr(bundle.MANIFEST_SIG, signature)
    tmp.replace(out)
    result.signed = signature is not None
    result.bytes = out.stat().st_size
    result.members = {name: len(raw) for name, raw in members.items()}
    return result


def _collect(
    con: sqlite3.Connection,
    result: ExportResult,
    start: float,
    end: float,
    agent: str,
    machine: str | None,
    samples: SampleSource | None,
    current_profiles: Mapping[str, KpiProfile] | None,
) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    rows = _rows(con, "created >= ? AND created < ? ORDER BY seq", (start, end))
    records: list[str] = []
    headers: list[dict[str, Any]] = []
    machines: set[str] = set()
    profile_hashes: set[str] = set()
    last: dict[str, Any] | None = None
    for _seq, kind, _created, row_machine, text in rows:
        doc = json.loads(text)
        signed = proof.from_envelope(doc)
        if signed is not None:
            last = {
                "agent": signed.agent,
                "epoch": signed.epoch,
                "seq": signed.seq,
                "hash": signed.link,
            }
        if machine is not None and row_machine is not None and row_machine != machine:
            headers.append(_stub(text))
            continue
        records.append(text)
        if row_machine is not None:
            machines.add(row_machine)
        if kind == "kpi" and isinstance(doc.get("data", {}).get("profile_hash"), str):
            profile_hashes.add(doc["data"]["profile_hash"])
    if rows:
        first_seq, last_seq = rows[0][0], rows[-1][0]
        before = _rows(con, "seq < ? ORDER BY seq DESC LIMIT 1", (first_seq,))
        after = _rows(con, "seq > ? ORDER BY seq LIMIT 1", (last_seq,))
        headers = [_stub(r[4]) for r in before] + headers + [_stub(r[4]) for r in after]
    if machine is not None:
        machines.add(machine)
    result.records, result.headers = len(records), len(headers)
    members[bundle.RECORDS] = _jsonl(records)
    members[bundle.HEADERS] = _jsonl(headers)
    members[bundle.INTERVALS] = _intervals(con, start, end, machine)
    members.update(_profiles(con, profile_hashes, current_profiles, result))
    sample_meta: dict[str, Any] = {}
    if samples is None:
        result.notes.append("no samples: the KPI records cannot be recomputed from this bundle")
    for name in sorted(machines):
        got = samples.samples(name, start, end) if samples is not None else None
        if got is None:
            continue
        members[f"samples/{name}.jsonl"] = _jsonl(sample_to_json(s) for s in got.samples)
        sample_meta[name] = {
            "source": got.source,
            "exact": got.exact,
            "count": len(got.samples),
            "from": format_instant(round(got.start * 1000)),
            "to": format_instant(round(got.end * 1000)),
            "from_s": got.start,
            "to_s": got.end,
        }
        if not got.exact:
            result.notes.append(
                f"samples of {name} rebuilt from raw readings ({got.source}): approximate, "
                "complete from " + sample_meta[name]["from"]
            )
    manifest = {
        "format": bundle.FORMAT,
        "tool": f"edge-agent {__version__}",
        "agent": agent,
        "machine": machine,
        "from": format_instant(round(start * 1000)),
        "to": format_instant(round(end * 1000)),
        "spec_version": SPEC_VERSION,
        "chain": {"records": len(records), "headers": len(headers), "last": last},
        "samples": sample_meta,
        "contracts": {},
    }
    members["\x00manifest"] = json.dumps(manifest).encode("utf-8")
    return members


def _intervals(con: sqlite3.Connection, start: float, end: float, machine: str | None) -> bytes:
    params: list[Any] = [start, end]
    where = "coalesce(end, start) >= ? AND start < ?"
    if machine is not None:
        where += " AND machine = ?"
        params.append(machine)
    cur = con.execute(
        f"SELECT machine, data FROM intervals WHERE {where} ORDER BY start, id",  # noqa: S608
        params,
    )
    items = []
    for name, data in cur:
        doc = json.loads(data)
        doc["machine"] = name
        items.append(doc)
    return _jsonl(items)


def _profiles(
    con: sqlite3.Connection,
    wanted: set[str],
    current: Mapping[str, KpiProfile] | None,
    result: ExportResult,
) -> dict[str, bytes]:
    found: dict[str, dict[str, Any]] = {}
    for (text,) in con.execute("SELECT envelope FROM evidence WHERE kind = 'config' ORDER BY seq"):
        found.update(profiles_of(json.loads(text).get("data", {})))
    for profile in (current or {}).values():
        found.setdefault(profile_hash(profile), profile.as_json())
    out: dict[str, bytes] = {}
    for phash in sorted(wanted | set(found)):
        if phash not in found:
            result.notes.append(f"profile {phash[:12]}... named by records is not known")
            continue
        if phash not in wanted:
            continue
        doc = {"profile_hash": phash, "spec_version": SPEC_VERSION, "profile": found[phash]}
        out[f"profiles/{phash}.json"] = json.dumps(doc, indent=1).encode("utf-8")
    return out
