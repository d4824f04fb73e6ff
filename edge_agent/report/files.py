"""Reading a report's material from an evidence bundle, an MQTT capture or export files.

:func:`from_files` works on any machine (nothing from the gateway is needed): a bundle
(ZIP), JSON lines of published envelopes (``mosquitto_sub -F %j``) or ``edge-agent export
--format jsonl`` files. The chain is checked against the keys given (``--key``), else
against the bundle's own keys (which proves integrity, not authorship: the page says so).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_agent.report.model import ReportData, Verification
from edge_agent.report.records import Collector, iso_to_s, summary


def from_files(
    paths: list[Path],
    *,
    start: float | None = None,
    end: float | None = None,
    machine: str | None = None,
    contract: str | None = None,
    trusted_keys: list[bytes] | None = None,
    trusted_fingerprints: set[str] | None = None,
    fault_names: Mapping[str, Mapping[int, str]] | None = None,
) -> ReportData:
    """The report from evidence bundles, MQTT captures or ``export --format jsonl`` files.

    Without ``start``/``end`` the range is the bundle's (manifest) or the records' span.

    Raises:
        OSError: A file cannot be read.
        ValueError: A file is none of the three.
    """
    from edge_agent.evidence.bundle import INTERVALS, is_bundle, read_bundle
    from edge_agent.evidence.verify import Evidence, Trust, verify

    col = Collector(float("-inf"), float("inf"), machine, contract)
    evidences: list[Evidence] = []
    bounds: list[tuple[float, float]] = []
    for path in paths:
        if is_bundle(path):
            evidence = read_bundle(path)
            evidences.append(evidence)
            manifest = evidence.manifest or {}
            a, b = iso_to_s(manifest.get("from")), iso_to_s(manifest.get("to"))
            if a is not None and b is not None:
                bounds.append((a, b))
            for entry in evidence.entries:
                if not entry.stub:
                    col.add_envelope(entry.doc)
            with zipfile.ZipFile(path) as archive:
                if INTERVALS in archive.namelist():
                    for line in archive.read(INTERVALS).decode("utf-8").splitlines():
                        if line.strip():
                            doc = json.loads(line)
                            col.add_interval(doc.get("machine"), doc)
        else:
            evidences.extend(_read_lines(path, col))
    if start is None or end is None:
        spans = bounds or _spans(col)
        if not spans:
            raise ValueError("no records found to report on (give --from and --to?)")
        start = min(a for a, _ in spans) if start is None else start
        end = max(b for _, b in spans) if end is None else end
    _narrow(col, start, end)
    data = col.result(
        title="Period report",
        source=", ".join(str(p) for p in paths),
        fault_names=fault_names or {},
    )
    signed = [e for e in evidences if e.entries]
    if not signed:
        data.verification = Verification(None, "no signed records in the input: nothing to check")
        return data
    merged = Evidence(source=data.source, bundle=len(signed) == 1 and signed[0].bundle)
    if merged.bundle:
        merged = signed[0]
    else:
        for e in signed:
            merged.entries.extend(e.entries)
            merged.keys.extend(e.keys)
            merged.read_findings.extend(e.read_findings)
    if trusted_keys or trusted_fingerprints:
        trust = Trust(keys=list(trusted_keys or []), fingerprints=set(trusted_fingerprints or ()))
        against = "the key(s) given with --key"
    else:
        trust = Trust(keys=list(merged.keys))
        against = (
            "the public key(s) carried by the input itself (integrity only: give --key "
            "with the device's fingerprint to check who signed)"
        )
    if not trust.keys and not trust.fingerprints:
        data.verification = Verification(
            None, "chain not checked: no public key in the input and none given with --key"
        )
        return data
    data.verification = summary(verify(merged, trust), against)
    return data


def _read_lines(path: Path, col: Collector) -> list[Any]:
    """An MQTT capture (envelopes) or ``edge-agent export --format jsonl`` lines."""
    from edge_agent.evidence.bundle import read_capture

    envelopes = False
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(
            f"{path}: neither an evidence bundle (ZIP) nor JSON lines (not UTF-8 text)"
        ) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            raise ValueError(f"{path} line {number}: not JSON") from None
        if not isinstance(doc, dict):
            continue
        if "record_key" in doc and isinstance(doc.get("data"), dict):  # export summaries
            col.add_record(doc["data"])
        elif "machine" in doc and isinstance(doc.get("data"), dict) and "start" in doc:
            col.add_interval(doc["machine"], doc["data"])  # export intervals
        elif doc.get("kind") == "stop" and isinstance(doc.get("detail"), dict):
            col.add_stop(doc["detail"])  # export events
        else:
            envelopes = True
    if not envelopes:
        return []
    evidence = read_capture(path)
    for entry in evidence.entries:
        col.add_envelope(entry.doc)
    return [evidence]


def _spans(col: Collector) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for rec in col.records:
        a, b = iso_to_s(rec.get("start")), iso_to_s(rec.get("end"))
        if a is not None and b is not None:
            out.append((a, b))
    return out


def _narrow(col: Collector, start: float, end: float) -> None:
    """Apply the final range to what was gathered without one."""
    records, stops, intervals, contracts = col.records, col.stops, col.intervals, col.contracts
    col.start, col.end = start, end
    col.records, col.stops, col.intervals, col.contracts = [], [], [], []
    col.machine_names = set()
    for rec in records:
        col.add_record(rec)
    for stop in stops:
        col.add_stop(stop)
    for iv in intervals:
        col.add_interval(iv.get("machine"), iv)
    for doc in contracts:
        col.add_contract(doc)
