"""Contract records and evidence checks on recorded agent traffic, in a real PostgreSQL.

The recording (:mod:`.recorded`) is what a real agent published with a contract. The
tests replay it through the collector's store (batches, re-deliveries, reordering) and
run ``verify`` on it.
Where a test needs a record the run did not produce (a later revision), it edits a copy:
storage does not check signatures, verification must then name the copy.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

from edge_agent.collect import verification
from edge_agent.collect.config import EvidenceConfig

from .recorded import AGENT, ANNEX, envelopes, recorded, replay, write


def rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def one(dsn: str, sql: str, *params: Any) -> Any:
    return rows(dsn, sql, *params)[0][0]


def check(dsn: str, cfg: EvidenceConfig, **kw: Any) -> list[verification.AgentVerdict]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return verification.run(conn, cfg, **kw)


def test_recorded_traffic_lands_in_the_contract_tables_once(pg_migrated: str) -> None:
    """Statuses, the period record and alerts in their tables; a re-delivery adds nothing."""
    replay(pg_migrated)
    numbered = [json.loads(p) for _t, p in recorded() if b'"seq"' in p]
    again = write(pg_migrated, recorded())
    assert (again.stored, again.duplicates) == (0, len(numbered))
    assert rows(pg_migrated, "SELECT reason FROM quarantine") == []
    statuses = envelopes("contract")
    latest = max(statuses, key=lambda d: d["data"]["at"])
    assert rows(pg_migrated, "SELECT agent, contract, seq, data FROM device_contract_status") == [
        (AGENT, "month", latest["seq"], latest["data"])
    ]
    (period,) = envelopes("contract_period")
    assert rows(
        pg_migrated, "SELECT contract, period, revision, seq, data FROM device_contract_periods"
    ) == [("month", period["data"]["period"], 0, period["seq"], period["data"])]
    alerts = envelopes("contract_alert")
    assert one(pg_migrated, "SELECT count(*) FROM device_contract_alerts") == len(alerts) > 0
    assert one(pg_migrated, "SELECT count(*) FROM other_records WHERE kind LIKE 'contract%%'") == 0
    signed = {d["seq"] for d in numbered if "proof" in d}
    assert {r[0] for r in rows(pg_migrated, "SELECT seq FROM signed_records")} == signed
    assert one(pg_migrated, "SELECT bool_and(raw::jsonb ? 'proof') FROM signed_records")


def test_statuses_out_of_order_keep_the_latest_evaluation(pg_migrated: str) -> None:
    """Delivered newest first (after an outage), the stored status is still the latest."""
    statuses = [(t, p) for t, p in recorded() if b'"kind":"contract"' in p]
    for message in reversed(statuses):
        write(pg_migrated, [message])
    latest = max(envelopes("contract"), key=lambda d: d["data"]["at"])
    assert rows(pg_migrated, "SELECT seq, updates FROM device_contract_status") == [
        (latest["seq"], 1)
    ]


def test_a_later_revision_replaces_the_period_and_every_revision_is_kept(pg_migrated: str) -> None:
    """Revision 1 replaces revision 0; revision 0 sent again later does not come back."""
    replay(pg_migrated)
    (period,) = envelopes("contract_period")
    topic = next(t for t, p in recorded() if b'"kind":"contract_period"' in p)
    top = max(d["seq"] for d in (json.loads(p) for _t, p in recorded()) if "seq" in d)
    revised = json.loads(json.dumps(period))
    revised["seq"], revised["data"]["revision"] = top + 1, 1
    revised["data"]["terms"][0]["so_far"] = 0.5
    older = json.loads(json.dumps(period))
    older["seq"] = top + 2
    write(pg_migrated, [(topic, json.dumps(revised).encode())])
    write(pg_migrated, [(topic, json.dumps(older).encode())])
    assert rows(pg_migrated, "SELECT revision, seq FROM device_contract_periods") == [(1, top + 1)]
    assert rows(
        pg_migrated,
        "SELECT revision, seq FROM device_contract_period_revisions ORDER BY revision",
    ) == [(0, period["seq"]), (1, top + 1)]


def test_an_alert_sent_again_with_a_new_number_is_stored_once(pg_migrated: str) -> None:
    """alert_id is the alert's identity: the copy is in the ledger, not twice in the table."""
    replay(pg_migrated)
    alert = envelopes("contract_alert")[0]
    topic = next(t for t, p in recorded() if b'"kind":"contract_alert"' in p)
    copy = dict(alert, seq=10_000)
    result = write(pg_migrated, [(topic, json.dumps(copy).encode())])
    assert result.stored == 1
    assert rows(
        pg_migrated,
        "SELECT seq FROM device_contract_alerts WHERE alert_id = %s",
        alert["data"]["alert_id"],
    ) == [(alert["seq"],)]


def test_verify_needs_the_annex_key_and_names_an_untrusted_one(pg_migrated: str) -> None:
    """Annex fingerprint: verified; another fingerprint: problem; none: no_anchor."""
    replay(pg_migrated)
    assert [v.status for v in check(pg_migrated, EvidenceConfig())] == ["no_anchor"]
    assert rows(pg_migrated, "SELECT verification_status, verification_detail FROM agents") == [
        ("no_anchor", "no trust anchor configured for this agent ([evidence.trust])")
    ]

    (verdict,) = check(pg_migrated, EvidenceConfig(fingerprints={AGENT: ("00" * 32,)}))
    assert verdict.status == "problem"
    assert {f.code for f in verdict.problems} == {"untrusted_key"}

    (verdict,) = check(pg_migrated, EvidenceConfig(fingerprints={AGENT: (ANNEX,)}))
    assert (verdict.status, verdict.problems) == ("verified", [])
    numbered = [json.loads(p) for _t, p in recorded() if b'"seq"' in p]
    assert rows(
        pg_migrated,
        "SELECT verification_status, verified_through_seq, verified_records, "
        "verification_detail FROM agents",
    ) == [("verified", max(d["seq"] for d in numbered), len(numbered), None)]


def test_changed_skips_an_agent_until_a_signed_record_arrives(pg_migrated: str) -> None:
    """--changed: nothing new, nothing re-checked; a new (here: forged) record is checked."""
    messages = recorded()
    write(pg_migrated, messages[:-3])
    cfg = EvidenceConfig(fingerprints={AGENT: (ANNEX,)})
    assert check(pg_migrated, cfg, changed_only=True)[0].status == "verified"
    assert check(pg_migrated, cfg, changed_only=True)[0].skipped
    alert = envelopes("contract_alert")[-1]
    forged = json.loads(json.dumps(alert))
    forged["seq"] = 10_000
    forged["data"]["alert_id"] += "-x"
    forged["data"]["state"] = "at_risk"
    write(pg_migrated, [("edge/e2e/contract-gw/contract_alert", json.dumps(forged).encode())])
    (verdict,) = check(pg_migrated, cfg, changed_only=True)
    assert verdict.status == "problem"
    assert "altered" in {f.code for f in verdict.problems}
    assert any("seq 10000" in f.message for f in verdict.problems)


def test_a_chained_record_never_delivered_is_a_chain_break(pg_migrated: str) -> None:
    """One signed, chained message lost on the way: verify names the missing number."""
    messages = recorded()
    chained = [
        (i, d)
        for i, (_t, p) in enumerate(messages)
        if (d := json.loads(p)).get("proof", {}).get("prev") is not None
    ]
    index, lost = chained[len(chained) // 2]
    write(pg_migrated, messages[:index] + messages[index + 1 :])
    (verdict,) = check(pg_migrated, EvidenceConfig(fingerprints={AGENT: (ANNEX,)}))
    assert verdict.status == "problem"
    breaks = [f for f in verdict.problems if f.code == "chain_break"]
    assert len(breaks) == 1
    assert f"seq {lost['seq']}" in breaks[0].message
