"""The evidence bundle: one ZIP file a customer can open, e-mail and verify.

Format ``edge-agent-evidence/1``, a ZIP archive (deflate) with:

* ``manifest.json``: what the bundle covers (agent, machine, ``from``/``to``),
  every other member with its SHA-256 and size, the chain's last record in the
  range, what the samples cover and whether they are exact;
* ``manifest.sig``: ``{"kid", "sig"}``, the device key's Ed25519 signature over
  the RFC 8785 form of the manifest, so a member or a record cut off the end is
  detected (export runs on the gateway, where the key is);
* ``records.jsonl``: the chained records of the range as published (envelopes
  with ``proof``), in ``seq`` order;
* ``headers.jsonl``: the signed headers (``data_sha256`` instead of ``data``) of
  chained records left out (other machines' records inside the range, and the
  records just before and after it), so the chain stays checkable end to end;
* ``intervals.jsonl``: the machine state intervals as the calculator produced them;
* ``samples/<machine>.jsonl``: the samples, ``edge-agent replay`` input format;
* ``profiles/<profile_hash>.json``: every KPI profile the records name;
* ``contracts/<contract_hash>.json``: the definition of each configured contract,
  exactly the document its hash covers (the manifest maps names to hashes);
* ``keys/<kid>.pem``: the device's public keys (never trusted by themselves:
  ``verify`` trusts only the key or fingerprint the customer gives it);
* ``README.txt``: how to check the bundle.

Why ZIP: it opens by double-click on every desktop, members are read one at a time
(a month of samples is never held twice), and a file cut short loses its central
directory, so truncation is detected before anything is read.

:func:`read_bundle` turns a file into :class:`~edge_agent.evidence.verify.Evidence`
without trusting it: every mismatch is a finding. Standard library only, plus the
KPI profile parser.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

from edge_agent.evidence.verify import PROBLEM, Entry, Evidence, Finding

FORMAT = "edge-agent-evidence/1"
MANIFEST = "manifest.json"
MANIFEST_SIG = "manifest.sig"
RECORDS = "records.jsonl"
HEADERS = "headers.jsonl"
INTERVALS = "intervals.jsonl"
README = "README.txt"
ZIP_MAGIC = b"PK\x03\x04"


def is_bundle(path: Path) -> bool:
    """Whether ``path`` starts like a ZIP file (else it is read as a JSON-lines capture)."""
    with open(path, "rb") as fh:
        return fh.read(4) == ZIP_MAGIC


def _problem(code: str, message: str) -> Finding:
    return Finding(PROBLEM, code, message)


def read_bundle(path: Path) -> Evidence:
    """Read a bundle; every defect becomes a finding (never an exception).

    Raises:
        OSError: The file cannot be opened at all.
    """
    evidence = Evidence(source=str(path), bundle=True)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        evidence.read_findings.append(
            _problem(
                "truncated",
                f"{path}: not a readable ZIP archive ({exc}): the bundle is truncated or damaged",
            )
        )
        return evidence
    with archive:
        names = set(archive.namelist())
        if MANIFEST not in names:
            evidence.read_findings.append(_problem("manifest", f"{path}: {MANIFEST} is missing"))
            return evidence
        try:
            manifest = json.loads(archive.read(MANIFEST))
        except (ValueError, zipfile.BadZipFile, OSError, EOFError) as exc:
            evidence.read_findings.append(
                _problem("manifest", f"{path}: {MANIFEST} unreadable: {exc}")
            )
            return evidence
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            evidence.read_findings.append(
                _problem("manifest", f"{path}: not an evidence bundle of format {FORMAT}")
            )
            return evidence
        evidence.manifest = manifest
        listed = manifest.get("members")
        members: dict[str, Any] = listed if isinstance(listed, dict) else {}
        contents: dict[str, bytes] = {}
        for name, meta in sorted(members.items()):
            if name not in names:
                evidence.read_findings.append(
                    _problem(
                        "member_missing", f"{path}: {name} is listed in the manifest but missing"
                    )
                )
                continue
            if name.startswith("samples/"):
                continue  # streamed below: a month at 1 Hz is 270 MB of text
            try:
                raw = archive.read(name)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                evidence.read_findings.append(
                    _problem(
                        "truncated", f"{path}: {name} cannot be read ({exc}): truncated or damaged"
                    )
                )
                continue
            if not isinstance(meta, dict) or hashlib.sha256(raw).hexdigest() != meta.get("sha256"):
                evidence.read_findings.append(
                    _problem(
                        "member_changed",
                        f"{path}: {name} does not match its SHA-256 in the manifest: changed "
                        "after export (or cut short)",
                    )
                )
            contents[name] = raw
        for name in sorted(names - set(members) - {MANIFEST, MANIFEST_SIG}):
            evidence.read_findings.append(
                _problem("member_unlisted", f"{path}: {name} is not listed in the manifest (added)")
            )
        if MANIFEST_SIG in names:
            try:
                sig_doc = json.loads(archive.read(MANIFEST_SIG))
                evidence.manifest_sig = (str(sig_doc["kid"]), str(sig_doc["sig"]))
            except (ValueError, KeyError, TypeError, zipfile.BadZipFile, OSError) as exc:
                evidence.read_findings.append(
                    _problem("manifest", f"{path}: {MANIFEST_SIG} unreadable: {exc}")
                )
        _load_records(evidence, contents)
        _load_rest(evidence, contents, manifest)
        _load_samples(evidence, archive, members, manifest)
    return evidence


def _jsonl(evidence: Evidence, name: str, raw: bytes) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((number, json.loads(line)))
        except ValueError:
            evidence.read_findings.append(
                _problem("malformed", f"{name} line {number}: not JSON (cut short?)")
            )
    return out


def _load_records(evidence: Evidence, contents: dict[str, bytes]) -> None:
    last: dict[tuple[Any, Any], tuple[int, int]] = {}
    for number, doc in _jsonl(evidence, RECORDS, contents.get(RECORDS, b"")):
        if not isinstance(doc, dict):
            evidence.read_findings.append(
                _problem("malformed", f"{RECORDS} line {number}: not a JSON object")
            )
            continue
        evidence.entries.append(Entry(f"{RECORDS} line {number}", doc))
        seq = doc.get("seq")
        key = (doc.get("agent"), doc.get("epoch"))
        if isinstance(seq, int):
            before = last.get(key)
            if before is not None and seq <= before[0]:
                evidence.read_findings.append(
                    Finding(
                        PROBLEM,
                        "reordered",
                        f"{RECORDS} line {number}: seq {seq} comes after seq {before[0]} "
                        f"(line {before[1]}): records were reordered or replayed (a bundle "
                        "lists them in seq order)",
                        seq,
                        f"{RECORDS} line {number}",
                    )
                )
            last[key] = (max(seq, before[0]) if before else seq, number)
    for number, doc in _jsonl(evidence, HEADERS, contents.get(HEADERS, b"")):
        if isinstance(doc, dict):
            evidence.entries.append(Entry(f"{HEADERS} line {number}", doc, stub=True))


def _load_rest(evidence: Evidence, contents: dict[str, bytes], manifest: dict[str, Any]) -> None:
    from edge_agent.configkit import Issues, Table
    from edge_agent.kpi.profile import parse_profile, profile_hash

    for name, raw in contents.items():
        if name.startswith("keys/") and name.endswith(".pem"):
            from edge_agent.evidence.keys import KeyFileError, load_public_pem

            try:
                evidence.keys.append(load_public_pem(raw, name))
            except KeyFileError as exc:
                evidence.read_findings.append(_problem("malformed", str(exc)))
        elif name.startswith("profiles/") and name.endswith(".json"):
            declared = name.removeprefix("profiles/").removesuffix(".json")
            try:
                doc = json.loads(raw)
                issues = Issues(name)
                profile = parse_profile(Table(doc["profile"], "", issues))
                issues.raise_if_any()
            except Exception as exc:
                evidence.read_findings.append(_problem("profile", f"{name}: unreadable: {exc}"))
                continue
            if profile_hash(profile) != declared:
                evidence.read_findings.append(
                    _problem(
                        "profile", f"{name}: its hash is {profile_hash(profile)}, not {declared}"
                    )
                )
                continue
            evidence.profiles[declared] = profile
        elif name.startswith("contracts/") and name.endswith(".json"):
            _load_contract(evidence, name, raw)


def _load_contract(evidence: Evidence, name: str, raw: bytes) -> None:
    from edge_agent.contracts.model import document_hash

    declared = name.removeprefix("contracts/").removesuffix(".json")
    try:
        doc = json.loads(raw)
        digest = document_hash(doc)
    except (ValueError, TypeError) as exc:
        evidence.read_findings.append(_problem("contract", f"{name}: unreadable: {exc}"))
        return
    if digest != declared:
        evidence.read_findings.append(
            _problem("contract", f"{name}: its hash is {digest}, not {declared}: altered")
        )
        return
    evidence.contracts[declared] = doc


def _load_samples(
    evidence: Evidence,
    archive: zipfile.ZipFile,
    members: dict[str, Any],
    manifest: dict[str, Any],
) -> None:
    """Parse each machine's samples while hashing them (one pass, one line at a time)."""
    import io

    from edge_agent.kpi.sample import sample_from_json

    listed = manifest.get("samples")
    spans: dict[str, Any] = listed if isinstance(listed, dict) else {}
    for machine, meta in spans.items():
        name = f"samples/{machine}.jsonl"
        if name not in members or name not in archive.namelist() or not isinstance(meta, dict):
            continue
        digest = hashlib.sha256()
        samples = []
        try:
            with archive.open(name) as raw:
                for number, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8"), start=1):
                    digest.update(line.encode("utf-8"))
                    if not line.strip():
                        continue
                    try:
                        samples.append(sample_from_json(json.loads(line)))
                    except ValueError as exc:
                        evidence.read_findings.append(
                            _problem("malformed", f"{name} line {number}: {exc}")
                        )
        except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError) as exc:
            evidence.read_findings.append(
                _problem("truncated", f"{name} cannot be read ({exc}): truncated or damaged")
            )
            continue
        entry = members[name]
        if not isinstance(entry, dict) or digest.hexdigest() != entry.get("sha256"):
            evidence.read_findings.append(
                _problem(
                    "member_changed",
                    f"{name} does not match its SHA-256 in the manifest: changed after export",
                )
            )
        evidence.samples[machine] = samples
        try:
            evidence.sample_spans[machine] = (float(meta["from_s"]), float(meta["to_s"]))
        except (KeyError, TypeError, ValueError):
            continue
        evidence.sample_exact[machine] = meta.get("exact") is True


def read_capture(path: Path) -> Evidence:
    """Read MQTT messages saved as JSON lines.

    Each line is either an envelope as published, or a subscriber's record with the
    envelope under ``payload`` (as an object or as JSON text), e.g. ``mosquitto_sub
    -F %j``. Lines that are neither are findings.

    Raises:
        OSError: The file cannot be read.
    """
    evidence = Evidence(source=str(path))
    with open(path, "rb") as fh:
        raw = fh.read()
    for number, doc in _jsonl(evidence, path.name, raw):
        where = f"{path.name} line {number}"
        if isinstance(doc, dict) and "payload" in doc and "kind" not in doc:
            payload = doc["payload"]
            if isinstance(payload, str):
                try:
                    payload = json.loads(payload)
                except ValueError:
                    payload = None
            doc = payload
        if not isinstance(doc, dict) or "kind" not in doc:
            continue  # not an agent message (another application's payload on the topic)
        evidence.entries.append(Entry(where, doc))
    return evidence
