"""Evidence verification per agent: the agent's own verify code over what the collector stored.

``edge-agent-collect verify`` reads every signed message of an agent from
``signed_records`` (the envelopes with their ``proof``, exactly as received), hands them to
:func:`edge_agent.evidence.verify.verify` as a capture would be (one
:class:`~edge_agent.evidence.verify.Entry` per stored message) with the agent's trust
anchors from the collector config (``[evidence.trust]``: the device key fingerprints of
the contract annex), and writes the outcome into the agent's row:

* ``verified``: every signature checks with a trusted key, the chain is unbroken;
* ``problem``: at least one problem (altered record, chain break, untrusted key, a
  stored row that differs from its signed copy ...); ``verification_detail`` names them;
* ``no_anchor``: no fingerprint or key is configured for the agent (nothing checked);
* ``no_records``: the agent sent no signed message yet.

Beyond the chain, the rows the views read (``kpi_records``, ``kpi_revisions``,
``stop_events``, the ``device_contract_*`` tables, ``other_records``) are compared with
the signed copy of the same ``(agent, epoch, seq)`` (an old data shape upgraded first, as
the collector stores it): a figure edited in the database
after it was stored is named (``row_altered``), and so is a row of a signed kind with
no signed copy in an epoch that signs (``row_unsigned``).

Every run checks an agent's whole stored chain (links need their neighbours, key
rotations need the key records); ``--changed`` skips agents with no signed message
received since their last check.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from edge_agent.collect import legacy
from edge_agent.collect.config import EvidenceConfig
from edge_agent.evidence import proof
from edge_agent.evidence.keys import KeyFileError, load_public_pem
from edge_agent.evidence.verify import PROBLEM, Entry, Evidence, Finding, Trust, verify

log = logging.getLogger("edge_agent.collect.verification")

VERIFIED = "verified"
PROBLEM_STATUS = "problem"
NO_ANCHOR = "no_anchor"
NO_RECORDS = "no_records"
MAX_DETAIL_LINES = 20
MAX_DETAIL_CHARS = 4000

# Tables whose rows are compared with their signed copy.
ROW_TABLES = (
    "kpi_records",
    "kpi_revisions",
    "stop_events",
    "device_contract_status",
    "device_contract_periods",
    "device_contract_period_revisions",
    "device_contract_alerts",
    "other_records",
)
# Kinds of the tables above, for naming an unsigned row (other_records carries its own).
_TABLE_KIND = {
    "kpi_records": "kpi",
    "kpi_revisions": "kpi",
    "stop_events": "stop",
    "device_contract_status": "contract",
    "device_contract_periods": "contract_period",
    "device_contract_period_revisions": "contract_period",
    "device_contract_alerts": "contract_alert",
}


class TrustError(Exception):
    """A configured public key file cannot be read (the message names it)."""


@dataclass
class AgentVerdict:
    """The outcome for one agent."""

    agent: str
    status: str
    records: int = 0
    epoch: str | None = None
    through_seq: int | None = None
    problems: list[Finding] = field(default_factory=list)
    skipped: bool = False

    @property
    def detail(self) -> str | None:
        """The problems, one per line (bounded), or None."""
        if self.status == NO_ANCHOR:
            return "no trust anchor configured for this agent ([evidence.trust])"
        if not self.problems:
            return None
        lines = [f"{f.code}: {f.message}" for f in self.problems[:MAX_DETAIL_LINES]]
        if len(self.problems) > MAX_DETAIL_LINES:
            lines.append(f"... and {len(self.problems) - MAX_DETAIL_LINES} more")
        return "\n".join(lines)[:MAX_DETAIL_CHARS]


def trust_of(cfg: EvidenceConfig, agent: str) -> Trust | None:
    """The agent's trust anchors, or None when none is configured.

    Raises:
        TrustError: A configured PEM file is missing or not an Ed25519 public key.
    """
    fps = cfg.fingerprints.get(agent, ())
    files = cfg.key_files.get(agent, ())
    if not fps and not files:
        return None
    keys = []
    for path in files:
        try:
            keys.append(load_public_pem(path.read_bytes(), str(path)))
        except OSError as exc:
            raise TrustError(f"evidence.trust.{agent}: {path}: {exc.strerror or exc}") from None
        except KeyFileError as exc:
            raise TrustError(f"evidence.trust.{agent}: {exc}") from None
    return Trust(keys=keys, fingerprints=set(fps))


def _where(epoch: str, seq: int) -> str:
    return f"signed_records epoch {epoch} seq {seq}"


def _load(conn: psycopg.Connection, agent: str) -> tuple[Evidence, dict[tuple[str, int], Any]]:
    """The agent's signed messages as evidence, and the data of each by (epoch, seq)."""
    evidence = Evidence(source=f"collector database, agent {agent}")
    data: dict[tuple[str, int], Any] = {}
    cur = conn.execute(
        "SELECT epoch, seq, raw FROM signed_records WHERE agent = %s ORDER BY epoch, seq",
        (agent,),
    )
    for epoch, seq, raw in cur:
        where = _where(epoch, seq)
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            evidence.read_findings.append(
                Finding(PROBLEM, "malformed", f"{where}: not JSON ({exc})", seq, where)
            )
            continue
        if not isinstance(doc, dict):
            evidence.read_findings.append(
                Finding(PROBLEM, "malformed", f"{where}: not an envelope", seq, where)
            )
            continue
        evidence.entries.append(Entry(where, doc))
        data[(epoch, seq)] = _as_stored(doc.get("kind"), doc.get("data"))
    return evidence, data


def _as_stored(kind: Any, data: Any) -> Any:
    """The signed data as the collector stores it (an old shape upgraded, :mod:`.legacy`)."""
    if isinstance(kind, str) and isinstance(data, dict):
        upgraded = legacy.upgrade(kind, data)
        if upgraded is not None:
            return upgraded
    return data


def _row_findings(
    conn: psycopg.Connection, agent: str, signed: dict[tuple[str, int], Any]
) -> list[Finding]:
    """Rows that differ from their signed copy, or lack one in an epoch that signs."""
    findings: list[Finding] = []
    signing_epochs = {e for e, _s in signed}
    for table in ROW_TABLES:
        kind = "kind" if table == "other_records" else "NULL::text"
        cur = conn.execute(
            f"SELECT epoch, seq, {kind}, data FROM {table} WHERE agent = %s",  # noqa: S608
            (agent,),
        )
        for epoch, seq, row_kind, row_data in cur:
            label = f"{table} epoch {epoch} seq {seq}"
            if (epoch, seq) in signed:
                if signed[(epoch, seq)] != row_data:
                    findings.append(
                        Finding(
                            PROBLEM,
                            "row_altered",
                            f"{label}: the stored data differs from the signed record "
                            "(changed in the database after it was received)",
                            seq,
                            label,
                        )
                    )
                continue
            row_kind = row_kind or _TABLE_KIND.get(table, "")
            if (
                epoch in signing_epochs
                and isinstance(row_data, dict)
                and proof.policy(row_kind, row_data) is not None
            ):
                findings.append(
                    Finding(
                        PROBLEM,
                        "row_unsigned",
                        f"{label}: a {row_kind} row without its signed record (inserted or "
                        "its signed copy deleted in the database)",
                        seq,
                        label,
                    )
                )
    return findings


def verify_agent(conn: psycopg.Connection, agent: str, trust: Trust | None) -> AgentVerdict:
    """Check one agent's stored evidence (read-only)."""
    if trust is None:
        return AgentVerdict(agent, NO_ANCHOR)
    evidence, signed = _load(conn, agent)
    if not evidence.entries and not evidence.read_findings:
        return AgentVerdict(agent, NO_RECORDS)
    report = verify(evidence, trust)
    problems = report.problems + _row_findings(conn, agent, signed)
    verdict = AgentVerdict(
        agent,
        PROBLEM_STATUS if problems else VERIFIED,
        records=len(evidence.entries),
        problems=problems,
    )
    if not problems:
        row = conn.execute(
            "SELECT epoch, max(seq) FROM signed_records WHERE agent = %s "
            "GROUP BY epoch ORDER BY max(ts) DESC LIMIT 1",
            (agent,),
        ).fetchone()
        if row is not None:
            verdict.epoch, verdict.through_seq = row[0], int(row[1])
    return verdict


_SAVE = """
UPDATE agents SET verification_status = %s, verification_detail = %s,
                  verified_through_seq = %s, verified_epoch = %s, verified_records = %s,
                  verified_at = coalesce(%s, now())
WHERE agent = %s
"""


def run(
    conn: psycopg.Connection,
    cfg: EvidenceConfig,
    *,
    agents: Sequence[str] = (),
    changed_only: bool = False,
    now: dt.datetime | None = None,
) -> list[AgentVerdict]:
    """Verify ``agents`` (default: every agent heard) and store each outcome.

    Each agent is read in its own REPEATABLE READ snapshot and its outcome committed
    right after, so a long run never holds the collector back.

    Raises:
        TrustError: A configured public key file cannot be read.
    """
    with conn.transaction():
        if agents:
            known = {
                r[0]
                for r in conn.execute(
                    "SELECT agent FROM agents WHERE agent = ANY(%s)", (list(agents),)
                )
            }
            names = [a for a in agents if a in known]
        else:
            names = [r[0] for r in conn.execute("SELECT agent FROM agents ORDER BY agent")]
    out: list[AgentVerdict] = []
    for agent in names:
        trust = trust_of(cfg, agent)
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if changed_only and _unchanged(conn, agent):
                out.append(AgentVerdict(agent, "", skipped=True))
                continue
            verdict = verify_agent(conn, agent, trust)
            conn.execute(
                _SAVE,
                (
                    verdict.status,
                    verdict.detail,
                    verdict.through_seq,
                    verdict.epoch,
                    verdict.records,
                    now,
                    agent,
                ),
            )
        if verdict.status == PROBLEM_STATUS:
            log.warning(
                "Evidence problem agent=%s problems=%d first=%s",
                agent,
                len(verdict.problems),
                verdict.problems[0].code,
            )
        out.append(verdict)
    return out


def _unchanged(conn: psycopg.Connection, agent: str) -> bool:
    row = conn.execute(
        "SELECT a.verified_at IS NOT NULL AND a.verification_status <> 'not_checked' "
        "AND NOT EXISTS (SELECT 1 FROM signed_records s WHERE s.agent = a.agent "
        "                AND s.received_at >= a.verified_at) "
        "AND a.verified_records IS NOT DISTINCT FROM "
        "    (SELECT count(*) FROM signed_records s WHERE s.agent = a.agent) "
        "FROM agents a WHERE a.agent = %s",
        (agent,),
    ).fetchone()
    return bool(row and row[0])
