"""Reading a report's material: from the buffer (on the gateway) or from a bundle / export.

Both paths end in the same :class:`~edge_agent.report.model.ReportData`, made of the
published records as they are (KPI records, stop events, contract status and period
records, the ``config`` record's KPI profiles) and the machine state intervals:

* :func:`from_buffer` reads the SQLite buffer through a read-only connection
  (``kpi_records``, ``stop_events``, ``intervals``, ``evidence``) and, when the
  evidence chain exists, checks it: the range is exported to a temporary bundle
  and :func:`edge_agent.evidence.verify.verify` runs on it with the device's own
  public keys;
* :func:`from_files` reads an evidence bundle (ZIP), an MQTT capture (JSON lines of
  envelopes) or ``edge-agent export --format jsonl`` files, on any machine; the chain is
  checked against the keys given (``--key``), else against the bundle's own keys (which
  proves integrity, not authorship: the page says so).
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edge_agent.report.model import MachineData, ReportData, Verification

#: Kinds of the contract messages a report shows (status "so far" and closed periods).
CONTRACT_KINDS = ("contract", "contract_period")
#: Problems listed on the page under the verification result (the rest are counted).
MAX_LISTED_PROBLEMS = 5


def iso_to_s(text: Any) -> float | None:
    """ISO 8601 text (``Z`` or offset) to UNIX seconds; None when not a time."""
    from edge_agent.commands.export import parse_time

    if not isinstance(text, str):
        return None
    try:
        return parse_time(text)
    except ValueError:
        return None


def overlaps(doc: Mapping[str, Any], start: float, end: float) -> bool:
    """Whether a record's ``[start, end)`` (ISO text) overlaps ``[start, end)``."""
    a, b = iso_to_s(doc.get("start")), iso_to_s(doc.get("end"))
    return a is not None and b is not None and a < end and b > start


def latest_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The highest revision of each ``(machine, name)`` window; a final one beats "so far"."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in records:
        key = (str(rec.get("machine", "")), str(rec.get("name", "")))
        rank = (int(rec.get("revision") or 0), bool(rec.get("final")), str(rec.get("end", "")))
        have = best.get(key)
        if have is None or rank >= (
            int(have.get("revision") or 0),
            bool(have.get("final")),
            str(have.get("end", "")),
        ):
            best[key] = dict(rec)
    return sorted(best.values(), key=lambda r: (str(r.get("start")), str(r.get("name"))))


def latest_stops(stops: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The latest update of each stop event (input in publication order; closed beats open)."""
    by_id: dict[str, dict[str, Any]] = {}
    for stop in stops:
        key = str(stop.get("event_id") or f"{stop.get('machine')}@{stop.get('start')}")
        have = by_id.get(key)
        if have is not None and have.get("end") is not None and stop.get("end") is None:
            continue
        by_id[key] = dict(stop)
    return sorted(by_id.values(), key=lambda s: float(s.get("start") or 0.0))


def latest_contracts(docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The latest status of each ``(contract, period)``: a closed period beats "so far"."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in docs:
        key = (str(doc.get("contract")), str(doc.get("period")))
        rank = (bool(doc.get("final")), int(doc.get("revision") or 0), str(doc.get("at", "")))
        have = best.get(key)
        if have is None or rank >= (
            bool(have.get("final")),
            int(have.get("revision") or 0),
            str(have.get("at", "")),
        ):
            best[key] = dict(doc)
    return sorted(best.values(), key=lambda d: (str(d.get("contract")), str(d.get("start"))))


class _Collector:
    """Gathers published documents and sorts them into a :class:`ReportData`."""

    def __init__(self, start: float, end: float, machine: str | None, contract: str | None):
        self.start, self.end = start, end
        self.machine, self.contract = machine, contract
        self.records: list[dict[str, Any]] = []
        self.stops: list[dict[str, Any]] = []
        self.intervals: list[dict[str, Any]] = []
        self.contracts: list[dict[str, Any]] = []
        self.profiles: dict[str, dict[str, Any]] = {}
        self.machine_names: set[str] = set()
        self.agent: str | None = None

    def wanted(self, name: Any) -> bool:
        return isinstance(name, str) and (self.machine is None or name == self.machine)

    def add_envelope(self, doc: Mapping[str, Any]) -> None:
        """One published message (``kind`` + ``data``)."""
        data = doc.get("data")
        if not isinstance(data, dict):
            return
        self.agent = self.agent or (doc.get("agent") if isinstance(doc.get("agent"), str) else None)
        kind = doc.get("kind")
        if kind == "kpi":
            self.add_record(data)
        elif kind == "stop":
            self.add_stop(data)
        elif kind in CONTRACT_KINDS:
            self.add_contract(data)
        elif kind == "config":
            self.add_config(data)

    def add_record(self, data: Mapping[str, Any]) -> None:
        if self.wanted(data.get("machine")) and overlaps(data, self.start, self.end):
            self.records.append(dict(data))
            self.machine_names.add(str(data["machine"]))

    def add_stop(self, data: Mapping[str, Any]) -> None:
        begin = data.get("start")
        if not self.wanted(data.get("machine")) or not isinstance(begin, int | float):
            return
        finish = data.get("end")
        if begin < self.end and (finish is None or finish > self.start):
            self.stops.append(dict(data))
            self.machine_names.add(str(data["machine"]))

    def add_interval(self, machine: Any, data: Mapping[str, Any]) -> None:
        begin, finish = data.get("start"), data.get("end")
        if not self.wanted(machine) or not isinstance(begin, int | float):
            return
        if begin < self.end and (not isinstance(finish, int | float) or finish > self.start):
            self.intervals.append({**data, "machine": machine})
            self.machine_names.add(str(machine))

    def add_contract(self, data: Mapping[str, Any]) -> None:
        if self.contract is not None and data.get("contract") != self.contract:
            return
        if self.machine is not None and self.machine not in (data.get("profile_hashes") or {}):
            return
        if overlaps(data, self.start, self.end):
            self.contracts.append(dict(data))

    def add_config(self, data: Mapping[str, Any]) -> None:
        machines = data.get("machines")
        if isinstance(machines, dict):
            for name, entry in machines.items():
                if isinstance(entry, dict) and isinstance(entry.get("profile"), dict):
                    self.profiles[name] = {**entry["profile"], "hash": entry.get("profile_hash")}

    def result(
        self, *, title: str, source: str, fault_names: Mapping[str, Mapping[int, str]]
    ) -> ReportData:
        data = ReportData(
            title=title, source=source, start=self.start, end=self.end, agent=self.agent
        )
        names = sorted(self.machine_names | ({self.machine} if self.machine else set()))
        for name in names:
            m = MachineData(name=name)
            m.records = latest_records(r for r in self.records if r.get("machine") == name)
            m.stops = latest_stops(s for s in self.stops if s.get("machine") == name)
            m.intervals = sorted(
                (i for i in self.intervals if i.get("machine") == name),
                key=lambda i: float(i["start"]),
            )
            m.profile = self.profiles.get(name)
            m.fault_names = dict(fault_names.get(name) or {})
            data.machines[name] = m
        data.contracts = latest_contracts(self.contracts)
        data.generated_at = time.time()
        return data


def fault_names_of(config: Any) -> dict[str, dict[int, str]]:
    """Each machine's fault code -> name table of an ``AgentConfig`` (None: none)."""
    if config is None:
        return {}
    return {name: dict(m.fault_names) for name, m in config.machines.items()}


def from_buffer(
    db: Path,
    *,
    start: float,
    end: float,
    machine: str | None = None,
    contract: str | None = None,
    state_dir: Path | None = None,
    config: Any = None,
    verify: bool = True,
) -> ReportData:
    """The report's material from the agent's buffer (read-only) and state directory.

    Raises:
        sqlite3.Error: The buffer cannot be read.
    """
    from edge_agent.buffer.schema import connect

    col = _Collector(start, end, machine, contract)
    con = connect(db, read_only=True)
    evidence_rows = 0
    try:
        con.execute("BEGIN")  # one snapshot
        for (text,) in con.execute("SELECT data FROM kpi_records ORDER BY created, seq"):
            col.add_record(json.loads(text))
        for (text,) in con.execute("SELECT data FROM stop_events ORDER BY seq"):
            col.add_stop(json.loads(text))
        for name, text in con.execute(
            "SELECT machine, data FROM intervals WHERE coalesce(end, start) >= ? AND start < ? "
            "ORDER BY start, id",
            (start, end),
        ):
            col.add_interval(name, json.loads(text))
        if _has_table(con, "evidence"):
            for (text,) in con.execute(
                "SELECT envelope FROM evidence WHERE kind IN "
                "('config', 'contract', 'contract_period') ORDER BY seq"
            ):
                col.add_envelope(json.loads(text))
            evidence_rows = con.execute(
                "SELECT count(*) FROM evidence WHERE created >= ? AND created < ?", (start, end)
            ).fetchone()[0]
        con.execute("COMMIT")
    finally:
        con.close()
    if state_dir is not None:
        # The "so far" status is not chained: the agent's latest is in status.json.
        _status_contracts(col, state_dir)
    data = col.result(
        title="Period report", source=f"buffer {db}", fault_names=fault_names_of(config)
    )
    if config is not None:
        data.agent = data.agent or config.agent.id
        for name, m in data.machines.items():
            if m.profile is None and name in config.machines:
                from edge_agent.kpi.profile import profile_hash

                m.profile = {"hash": profile_hash(config.machines[name].kpi)}
    if verify:
        data.verification = _verify_buffer(db, state_dir, data, evidence_rows)
    return data


def _has_table(con: sqlite3.Connection, name: str) -> bool:
    row = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,))
    return row.fetchone() is not None


def _status_contracts(col: _Collector, state_dir: Path) -> None:
    """The contracts' latest "so far" status from ``status.json`` (as last published)."""
    from edge_agent.status_view import STATUS_FILE, SnapshotError, load_snapshot

    try:
        snapshot = load_snapshot(state_dir / STATUS_FILE)
    except (SnapshotError, OSError):
        return
    for status in (snapshot.get("contracts") or {}).values():
        if isinstance(status, dict):
            col.add_contract(status)


def _verify_buffer(
    db: Path, state_dir: Path | None, data: ReportData, evidence_rows: int
) -> Verification:
    """Export the range to a temporary bundle and verify it with the device's own keys."""
    from edge_agent.evidence.bundle import read_bundle
    from edge_agent.evidence.export import export_bundle
    from edge_agent.evidence.keys import KeyFileError, KeyStore
    from edge_agent.evidence.verify import Trust, verify

    if evidence_rows == 0:
        return Verification(None, "no evidence chain in this range (evidence not enabled?)")
    try:
        keys = KeyStore(state_dir if state_dir is not None else db.parent)
        public = keys.public_keys()
    except (KeyFileError, OSError) as exc:
        return Verification(None, f"evidence chain not checked: device keys unreadable ({exc})")
    if not public:
        return Verification(None, "evidence chain not checked: no device public key found")
    with tempfile.TemporaryDirectory(prefix="edge-report-") as tmp:
        out = Path(tmp) / "range.zip"
        try:
            # To now, not to the report's end: a bundle of a middle range fails verify's
            # tail check today (the record after the range is a header stub; see NEWS).
            export_bundle(
                db=db,
                out=out,
                start=data.start,
                end=max(data.end, time.time() + 1.0),
                agent=data.agent or "",
                keys=None,
            )
        except (sqlite3.Error, OSError) as exc:
            return Verification(None, f"evidence chain not checked: export failed ({exc})")
        evidence = read_bundle(out)
        evidence.keys = [k.raw for k in public]
        report = verify(evidence, Trust(keys=[k.raw for k in public]))
    # The bundle is this process's own temporary copy of the buffer (left unsigned: the
    # device's private key is not needed to read): its missing manifest signature is no finding.
    report.findings = [f for f in report.findings if f.code != "manifest_unsigned"]
    return _summary(report, "the device's own public key(s) in the state directory")


def _summary(report: Any, against: str) -> Verification:
    problems = report.problems
    counts = report.counts
    what = (
        f"{counts.get('signed_records', 0)} signed records, "
        f"{counts.get('chained_records', 0)} chained; checked against {against}"
    )
    if problems:
        details = [f"[{f.code}] {f.message}" for f in problems[:MAX_LISTED_PROBLEMS]]
        if len(problems) > MAX_LISTED_PROBLEMS:
            details.append(f"... and {len(problems) - MAX_LISTED_PROBLEMS} more")
        return Verification(False, f"NOT VERIFIED: {len(problems)} problem(s); {what}", details)
    return Verification(True, f"VERIFIED: signatures and chain links check out; {what}")


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

    col = _Collector(float("-inf"), float("inf"), machine, contract)
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
    data.verification = _summary(verify(merged, trust), against)
    return data


def _read_lines(path: Path, col: _Collector) -> list[Any]:
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


def _spans(col: _Collector) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for rec in col.records:
        a, b = iso_to_s(rec.get("start")), iso_to_s(rec.get("end"))
        if a is not None and b is not None:
            out.append((a, b))
    return out


def _narrow(col: _Collector, start: float, end: float) -> None:
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
