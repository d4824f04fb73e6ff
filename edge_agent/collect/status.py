"""``edge-agent-collect status``: what the back office holds, read from PostgreSQL.

Read-only: the migration state, the collector instances and their last heartbeat, totals
per table, the quarantine, and one line per agent from the ``agent_overview`` view (last
sequence number, numbers missing in open gaps, gaps found and healed, duplicates,
quarantined messages, other kinds, last contact, evidence verification status), and the
outcome of the last ``edge-agent-collect verify`` per agent with the problems it named.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from psycopg.rows import dict_row

from edge_agent.collect import db, migrate
from edge_agent.collect.config import DatabaseConfig

AGENT_COLUMNS = (
    "agent",
    "status",
    "current_epoch",
    "last_seq",
    "missing",
    "gaps_detected",
    "gaps_filled",
    "duplicates",
    "quarantined",
    "other_kinds",
    "messages",
    "reported_backlog",
    "last_seen",
    "verification_status",
)
TABLES = (
    "kpi_records",
    "kpi_revisions",
    "stop_events",
    "telemetry",
    "health",
    "other_records",
    "signed_records",
    "device_contract_status",
    "device_contract_periods",
    "device_contract_alerts",
    "quarantine",
    "ledger",
)


def collect(cfg: DatabaseConfig, *, limit: int = 200) -> dict[str, Any]:
    """The status as a JSON-serialisable document."""
    state = migrate.state(cfg)
    doc: dict[str, Any] = {
        "database": db.describe_target(cfg),
        "migrations": {"applied": list(state.applied), "pending": list(state.pending)},
    }
    if "0003.contracts_evidence" not in state.applied:
        doc["error"] = "schema not migrated: run `edge-agent-collect migrate`"
        return doc
    with (
        db.connect(cfg, "status", autocommit=True) as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        # Estimates for the big tables (exact counts would scan them); exact below 100k rows.
        counts = {}
        for table in TABLES:
            cur.execute("SELECT reltuples::bigint AS n FROM pg_class WHERE relname = %s", (table,))
            row = cur.fetchone()
            estimate = int(row["n"]) if row and row["n"] is not None else -1
            if estimate < 100_000:
                cur.execute(f"SELECT count(*) AS n FROM {table}")  # noqa: S608 - fixed names
                exact = cur.fetchone()
                counts[table] = int(exact["n"]) if exact else 0
            else:
                counts[table] = estimate
        doc["rows"] = counts
        cur.execute(
            "SELECT client_id, hostname, pid, version, subscriptions, started_at, heartbeat_at, "
            "messages, stored, duplicates, quarantined, db_retries, last_error "
            "FROM collector_instances ORDER BY client_id"
        )
        doc["collectors"] = [_jsonable(r) for r in cur.fetchall()]
        cur.execute(
            f"SELECT {', '.join(AGENT_COLUMNS)} FROM agent_overview ORDER BY agent LIMIT %s",  # noqa: S608
            (limit,),
        )
        doc["agents"] = [_jsonable(r) for r in cur.fetchall()]
        cur.execute(
            "SELECT agent, verification_status, verified_epoch, verified_through_seq, "
            "verified_records, verified_at, verification_detail FROM agents "
            "WHERE verification_status <> 'not_checked' ORDER BY agent LIMIT %s",
            (limit,),
        )
        doc["verification"] = [_jsonable(r) for r in cur.fetchall()]
        cur.execute(
            "SELECT reason, count(*) AS n FROM quarantine GROUP BY reason ORDER BY n DESC LIMIT 5"
        )
        doc["quarantine_reasons"] = [_jsonable(r) for r in cur.fetchall()]
    return doc


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        out[key] = value
    return out


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def render(doc: dict[str, Any]) -> str:
    """The status as text for a terminal."""
    lines = [f"database: {doc['database']}"]
    mig = doc["migrations"]
    lines.append(
        f"migrations: {len(mig['applied'])} applied"
        + (f", PENDING: {', '.join(mig['pending'])}" if mig["pending"] else ", up to date")
    )
    if "error" in doc:
        lines.append(doc["error"])
        return "\n".join(lines) + "\n"
    lines.append("rows: " + ", ".join(f"{k} {v}" for k, v in doc["rows"].items()))
    lines.append("")
    lines.append("collectors:")
    if not doc["collectors"]:
        lines.append("  (none has run against this database)")
    for c in doc["collectors"]:
        lines.append(
            f"  {c['client_id']} on {c['hostname']} pid {c['pid']} v{c['version']}: "
            f"heartbeat {c['heartbeat_at']}, messages {c['messages']}, stored {c['stored']}, "
            f"duplicates {c['duplicates']}, quarantined {c['quarantined']}, "
            f"db retries {c['db_retries']}"
            + (f", last error: {c['last_error']}" if c["last_error"] else "")
        )
    lines.append("")
    headers = (
        "agent",
        "status",
        "epoch",
        "last seq",
        "missing",
        "gaps",
        "healed",
        "dups",
        "quar.",
        "other",
        "messages",
        "backlog",
        "last seen",
        "verified",
    )
    table = [headers] + [tuple(_cell(a[c]) for c in AGENT_COLUMNS) for a in doc["agents"]]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    for row in table:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    if not doc["agents"]:
        lines.append("(no agent has been heard yet)")
    if doc["verification"]:
        lines.append("")
        lines.append("evidence verification (edge-agent-collect verify):")
        for v in doc["verification"]:
            text = f"  {v['agent']}: {v['verification_status']} at {_cell(v['verified_at'])}"
            if v["verified_through_seq"] is not None:
                text += (
                    f", {v['verified_records']} signed records through seq "
                    f"{v['verified_through_seq']} (epoch {v['verified_epoch']})"
                )
            lines.append(text)
            for line in (v["verification_detail"] or "").splitlines():
                lines.append(f"    {line}")
    if doc["quarantine_reasons"]:
        lines.append("")
        lines.append("quarantine (most frequent reasons):")
        for q in doc["quarantine_reasons"]:
            lines.append(f"  {q['n']:>6}  {q['reason']}")
    return "\n".join(lines) + "\n"


def as_json(doc: dict[str, Any]) -> str:
    """The status as one JSON document."""
    return json.dumps(doc, indent=2, default=str) + "\n"
