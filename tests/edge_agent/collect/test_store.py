"""Batches written into a real PostgreSQL: idempotence, revisions, gaps, quarantine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

from edge_agent.collect import store
from edge_agent.collect.schemas import load_schemas

from .samples import encode, health_data, kpi_data, message, payload, stop_data, topic

SCHEMAS = load_schemas()


def items(*messages: tuple[str, bytes]) -> list[store.Item]:
    return [store.prepare(t, p, SCHEMAS) for t, p in messages]


def msg(kind: str, seq: int | None, **kw: Any) -> tuple[str, bytes]:
    return (topic(kind, kw.get("agent", "gw-1")), payload(kind, seq, **kw))


def write(dsn: str, batch: Sequence[tuple[str, bytes]]) -> store.BatchResult:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        return store.write(conn, items(*batch))


def rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def one(dsn: str, sql: str, *params: Any) -> Any:
    return rows(dsn, sql, *params)[0][0]


def test_the_same_batch_twice_stores_once(pg_migrated: str) -> None:
    """A re-delivered batch (collector died after commit, before PUBACK) adds no row."""
    batch = [msg("telemetry", 1), msg("health", 2), msg("kpi", 3), msg("stop", 4)]
    first = write(pg_migrated, batch)
    assert (first.stored, first.duplicates) == (4, 0)
    again = write(pg_migrated, batch)
    assert (again.stored, again.duplicates) == (0, 4)
    assert one(pg_migrated, "SELECT count(*) FROM ledger") == 4
    for table in ("telemetry", "health", "kpi_records", "kpi_revisions", "stop_events"):
        assert one(pg_migrated, f"SELECT count(*) FROM {table}") == 1, table  # noqa: S608
    assert rows(pg_migrated, "SELECT messages, duplicates FROM agents") == [(4, 4)]
    assert one(pg_migrated, "SELECT duplicates FROM agent_streams") == 4


def test_duplicates_inside_one_batch_are_counted(pg_migrated: str) -> None:
    """Two copies of one number in the same batch: one row, one duplicate."""
    result = write(pg_migrated, [msg("telemetry", 1), msg("telemetry", 1)])
    assert (result.stored, result.duplicates) == (1, 1)


def test_epochs_are_separate_streams(pg_migrated: str) -> None:
    """Seq 1 of epoch '' (v1) and seq 1 of epoch 'b' (v2) are two messages."""
    write(pg_migrated, [msg("telemetry", 1), msg("telemetry", 1, epoch="0000000b")])
    assert one(pg_migrated, "SELECT count(*) FROM telemetry") == 2
    assert rows(pg_migrated, "SELECT epoch, last_seq FROM agent_streams ORDER BY epoch") == [
        ("", 1),
        ("0000000b", 1),
    ]
    assert one(pg_migrated, "SELECT current_epoch FROM agents") in ("", "0000000b")


def test_gap_is_detected_and_healed_by_a_late_message(pg_migrated: str) -> None:
    """1, 2, 5 leaves 3..4 missing; 4 and then 3 arriving late close the gap."""
    write(pg_migrated, [msg("telemetry", 1), msg("telemetry", 2), msg("kpi", 5)])
    overview = "SELECT last_seq, missing, gaps_detected, gaps_filled FROM agent_overview"
    assert rows(pg_migrated, overview) == [(5, 2, 2, 0)]
    assert rows(pg_migrated, "SELECT first_seq, last_seq FROM seq_gaps") == [(3, 4)]
    result = write(pg_migrated, [msg("telemetry", 4)])
    assert result.filled == 1
    assert rows(pg_migrated, overview) == [(5, 1, 2, 1)]
    write(pg_migrated, [msg("health", 3)])
    assert rows(pg_migrated, overview) == [(5, 0, 2, 2)]
    assert one(pg_migrated, "SELECT count(*) FROM seq_gaps") == 0


def test_kpi_revision_never_goes_back(pg_migrated: str) -> None:
    """so-far < final rev 0 < final rev 2; a lower rank arriving later changes nothing."""

    def kpi(seq: int, revision: int, final: bool, operating: float) -> tuple[str, bytes]:
        data = kpi_data(revision=revision, final=final, operating=operating)
        return msg("kpi", seq, data=data)

    write(pg_migrated, [kpi(1, 0, False, 100.0)])
    write(pg_migrated, [kpi(3, 2, True, 300.0)])
    write(pg_migrated, [kpi(2, 0, True, 200.0), kpi(4, 1, True, 250.0)])  # late, lower
    write(pg_migrated, [kpi(5, 0, False, 50.0)])  # a stale so-far copy
    assert rows(
        pg_migrated, "SELECT revision, final, operating_time_s, seq, updates FROM kpi_records"
    ) == [(2, True, 300.0, 3, 2)]
    assert rows(pg_migrated, "SELECT revision FROM kpi_revisions ORDER BY 1") == [(0,), (1,), (2,)]


def test_same_rank_kpi_keeps_the_later_message(pg_migrated: str) -> None:
    """Two so-far records of one window: the higher seq wins whatever the arrival order."""
    a = msg("kpi", 7, data=kpi_data(final=False, operating=70.0))
    b = msg("kpi", 6, data=kpi_data(final=False, operating=60.0))
    write(pg_migrated, [a, b])
    assert one(pg_migrated, "SELECT operating_time_s FROM kpi_records") == 70.0


def test_stop_event_updates_replace_by_event_id(pg_migrated: str) -> None:
    """The closed update of a stop replaces the open one; a late open copy does not."""
    open_ = msg("stop", 1, data=stop_data(end=None))
    closed = msg("stop", 2, data=stop_data())
    write(pg_migrated, [closed])
    write(pg_migrated, [open_])
    assert rows(pg_migrated, "SELECT event_id, end_at IS NOT NULL, seq FROM stop_events") == [
        ("press1@2026-11-26T08:00:00.000Z", True, 2)
    ]


def test_invalid_messages_are_quarantined_and_keep_their_number(pg_migrated: str) -> None:
    """A schema failure is quarantined with its reason; its seq is not reported missing."""
    bad = kpi_data()
    bad["stops"] = -3
    batch = [
        msg("telemetry", 1),
        msg("kpi", 2, data=bad),
        ("edge/x", b"\x00garbage"),
        msg("telemetry", 3),
    ]
    result = write(pg_migrated, batch)
    assert (result.stored, result.quarantined) == (2, 2)
    reasons = rows(pg_migrated, "SELECT agent, seq, reason FROM quarantine ORDER BY id")
    assert reasons[0][:2] == ("gw-1", 2)
    assert "data/stops" in reasons[0][2]
    assert reasons[1][0] is None
    assert "not UTF-8" in reasons[1][2] or "not JSON" in reasons[1][2]
    assert rows(pg_migrated, "SELECT missing, quarantined FROM agent_overview") == [(0, 1)]
    write(pg_migrated, batch)  # re-delivered: counted on the quarantine row, not stored again
    assert one(pg_migrated, "SELECT count(*) FROM quarantine") == 2
    assert one(pg_migrated, "SELECT sum(times_seen) FROM quarantine") == 4


def test_unknown_kind_is_stored_raw_and_counted(pg_migrated: str) -> None:
    """A kind the collector has no table for lands in other_records, counted per agent."""
    raw = payload("contract", 1, data={"contract": "c1", "state": "on_track"})
    write(pg_migrated, [("edge/s/gw-1/contract", raw)])
    assert rows(pg_migrated, "SELECT kind, validated, raw FROM other_records") == [
        ("contract", False, raw.decode())
    ]
    assert one(pg_migrated, "SELECT other_kinds FROM agents") == 1


def test_status_and_health_update_the_agent(pg_migrated: str) -> None:
    """The newest retained status wins; the agent's backlog comes from its health."""
    on = message(
        "status", None, data={"state": "online", "site": "s1"}, ts="2026-11-26T10:00:00.000Z"
    )
    off = message(
        "status", None, data={"state": "offline", "site": "s1"}, ts="2026-11-26T09:00:00.000Z"
    )
    health = message("health", 1, data=health_data(backlog=12))
    write(pg_migrated, [("s", encode(on)), ("s", encode(off)), ("h", encode(health))])
    assert rows(pg_migrated, "SELECT status, site, reported_backlog FROM agents") == [
        ("online", "s1", 12)
    ]


@pytest.mark.parametrize("field", ["kpi", "stop"])
def test_old_shapes_are_stored_upgraded_with_the_raw_message(pg_migrated: str, field: str) -> None:
    """Records of agents older than this round are stored in the decided shape, flagged."""
    if field == "kpi":
        data = kpi_data()
        data["name"] = data.pop("window")
        del data["window_kind"]
        table = "kpi_records"
    else:
        data = {
            "machine": "m",
            "start": 1795680000.0,
            "end": 1795680010.0,
            "duration_s": 10.0,
            "class": "breakdown",
            "fault": 7,
        }
        table = "stop_events"
    raw = payload(field, 1, data=data)
    write(pg_migrated, [("t", raw)])
    assert rows(pg_migrated, f"SELECT upgraded, raw FROM {table}") == [(True, raw.decode())]  # noqa: S608
