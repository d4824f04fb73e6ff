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

import hashlib
import json
import sqlite3
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edge_agent import __version__
from edge_agent.contracts.model import Contract, contract_document, contract_hash
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
    current_contracts: Mapping[str, Contract] | None = None,
    clock: Any = time.time,
) -> ExportResult:
    """Write the bundle for ``[start, end)`` to ``out`` (via a temporary file, then renamed).

    Raises:
        sqlite3.Error: The buffer cannot be read.
        OSError: The output cannot be written.
    """
    from edge_agent.buffer.schema import connect

    result = ExportResult(path=out)
    tmp = out.with_name(out.name + ".tmp")
    con = connect(db, read_only=True)
    try:
        con.execute("BEGIN")  # one snapshot for the whole export
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            members, manifest = _collect(con, result, start, end, agent, machine, current_profiles)
            manifest["contracts"] = _contracts(
                members, result, manifest.pop("contract_hashes"), current_contracts
            )
            digests: dict[str, dict[str, Any]] = {}
            manifest["samples"] = _write_samples(
                z, digests, result, samples, manifest.pop("machines"), start, end
            )
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
            for name, raw in sorted(members.items()):
                z.writestr(name, raw)
                digests[name] = {"sha256": sha256_hex(raw), "bytes": len(raw)}
                result.members[name] = len(raw)
            manifest["created"] = format_instant(round(clock() * 1000))
            manifest["members"] = dict(sorted(digests.items()))
            z.writestr(bundle.MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
            signature = _sign(manifest, keys, result)
            if signature is not None:
                z.writestr(bundle.MANIFEST_SIG, signature)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    tmp.replace(out)
    result.bytes = out.stat().st_size
    return result


def _sign(manifest: dict[str, Any], keys: KeyStore | None, result: ExportResult) -> bytes | None:
    if keys is None:
        return None
    try:
        active = keys.active()
    except KeyFileError as exc:
        result.notes.append(f"manifest not signed: {exc}")
        return None
    if active is None:
        result.notes.append("manifest not signed: no device key")
        return None
    result.signed = True
    sig = proof.encode_sig(active.sign(canonical(manifest)))
    return json.dumps({"kid": active.kid, "sig": sig}).encode("ascii")


def _write_samples(
    z: zipfile.ZipFile,
    digests: dict[str, dict[str, Any]],
    result: ExportResult,
    source: SampleSource | None,
    machines: list[str],
    start: float,
    end: float,
) -> dict[str, Any]:
    """Stream each machine's samples into an LZMA member; returns the manifest's samples part.

    LZMA: one sample a second for a month is 272 MB of JSON lines, 26 MB deflated and
    about 6 MB with LZMA (docs/bench-evidence.md); Python's zipfile (so verify) and
    7-Zip read it. Samples are written as they come, never held in memory.
    """
    meta: dict[str, Any] = {}
    if source is None:
        result.notes.append("no samples: the KPI records cannot be recomputed from this bundle")
        return meta
    for name in machines:
        got = source.samples(name, start, end)
        if got is None:
            continue
        member = f"samples/{name}.jsonl"
        info = zipfile.ZipInfo(member, date_time=time.gmtime(time.time())[:6])
        info.compress_type = zipfile.ZIP_LZMA
        digest = hashlib.sha256()
        count = size = 0
        with z.open(info, "w") as fh:
            lines: list[str] = []
            for sample in got.samples:
                lines.append(json.dumps(sample_to_json(sample), separators=(",", ":")))
                count += 1
                if len(lines) >= 10_000:
                    size += _flush_lines(fh, digest, lines)
            size += _flush_lines(fh, digest, lines)
        digests[member] = {"sha256": digest.hexdigest(), "bytes": size}
        result.members[member] = size
        meta[name] = {
            "source": got.source,
            "exact": got.exact,
            "count": count,
            "from": format_instant(round(got.start * 1000)),
            "to": format_instant(round(got.end * 1000)),
            "from_s": got.start,
            "to_s": got.end,
        }
        if not got.exact:
            result.notes.append(
                f"samples of {name} rebuilt from raw readings ({got.source}): approximate, "
                f"complete from {meta[name]['from']}"
            )
    return meta


def _flush_lines(fh: IO[bytes], digest: Any, lines: list[str]) -> int:
    if not lines:
        return 0
    data = ("\n".join(lines) + "\n").encode("utf-8")
    fh.write(data)
    digest.update(data)
    lines.clear()
    return len(data)


def _collect(
    con: sqlite3.Connection,
    result: ExportResult,
    start: float,
    end: float,
    agent: str,
    machine: str | None,
    current_profiles: Mapping[str, KpiProfile] | None,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    members: dict[str, bytes] = {}
    rows = _rows(con, "created >= ? AND created < ? ORDER BY seq", (start, end))
    records: list[str] = []
    headers: list[dict[str, Any]] = []
    machines: set[str] = set()
    profile_hashes: set[str] = set()
    contract_hashes: set[str] = set()
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
        if kind.startswith("contract") and isinstance(
            doc.get("data", {}).get("contract_hash"), str
        ):
            contract_hashes.add(doc["data"]["contract_hash"])
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
    manifest = {
        "format": bundle.FORMAT,
        "tool": f"edge-agent {__version__}",
        "agent": agent,
        "machine": machine,
        "from": format_instant(round(start * 1000)),
        "to": format_instant(round(end * 1000)),
        "spec_version": SPEC_VERSION,
        "chain": {"records": len(records), "headers": len(headers), "last": last},
        "contract_hashes": contract_hashes,
        "machines": sorted(machines),
    }
    return members, manifest


def _contracts(
    members: dict[str, bytes],
    result: ExportResult,
    wanted: set[str],
    current: Mapping[str, Contract] | None,
) -> dict[str, str]:
    """``contracts/<hash>.json`` for the current configuration's contracts; name -> hash.

    Each member is the exact document the hash covers (:func:`contract_document`), so
    a verifier recomputes the hash from it. A contract record in the range that names
    a definition the configuration no longer has is noted (it was changed since).
    """
    out: dict[str, str] = {}
    for name, contract in sorted((current or {}).items()):
        digest = contract_hash(contract)
        out[name] = digest
        members[f"contracts/{digest}.json"] = (
            json.dumps(contract_document(contract), sort_keys=True, indent=1) + "\n"
        ).encode("utf-8")
    for digest in sorted(wanted - set(out.values())):
        result.notes.append(
            f"contract definition {digest[:12]}... named by records is not in the current "
            "configuration: not in the bundle"
        )
    return out


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
