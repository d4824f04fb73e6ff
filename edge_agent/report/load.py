"""Reading a report's material from the agent's buffer (on the gateway).

:func:`from_buffer` reads the SQLite buffer through a read-only connection
(``kpi_records``, ``stop_events``, ``intervals``, ``evidence``) and the contracts' latest
status from ``status.json``, and, when the evidence chain exists, checks it: the range is
exported to a temporary bundle and :func:`edge_agent.evidence.verify.verify` runs on it
with the device's own public keys. Bundles and exports: :mod:`.files`.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_agent.report.model import ReportData, Verification
from edge_agent.report.records import Collector, fault_names_of, summary


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

    col = Collector(start, end, machine, contract)
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


def _status_contracts(col: Collector, state_dir: Path) -> None:
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
    return summary(report, "the device's own public key(s) in the state directory")
