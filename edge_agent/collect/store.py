"""Write one batch of messages into PostgreSQL in one transaction, idempotently.

:func:`prepare` is pure (decode, check, validate, build the row); :func:`write` runs
inside a transaction the caller opens and commits (:mod:`edge_agent.collect.collector`
acknowledges the messages only after that commit). Order of work in :func:`write`:

1. **Ledger** insert of every numbered message, ``ON CONFLICT DO NOTHING RETURNING``: what
   comes back is new; the rest are duplicates (counted, not stored again).
2. **Rows** of the new messages: telemetry, health, other kinds (insert once); KPI records
   (replace only by a higher rank: final over so-far, higher revision, then the later
   message) and every final revision; stop events by ``event_id`` (closed over open, then
   the later message); contract status by (agent, contract) (later ``at``, then the later
   message), contract period records by (agent, contract, period) (higher revision, then
   the later message) and every revision, contract alerts by ``alert_id`` (first copy);
   every message with a ``proof`` once more, as received, in ``signed_records`` (what
   :mod:`.verification` checks); **quarantine** (by digest, a re-delivered copy is counted).
3. **Lock the agents** of the batch (upsert of their ``agents`` rows, in sorted order), then
   **streams and gaps** (:mod:`edge_agent.collect.sequence`) for the new numbers,
   **status** messages (no number: the newest per agent wins) and the agents' counters.
   Two collector instances that receive messages of the same agent (shared subscription)
   serialise on that row for this last part only, so they never interleave one agent's gap
   bookkeeping; every lock is taken in one global order, so they cannot deadlock.

Running :func:`write` twice with the same messages stores nothing twice: the second run
finds every number in the ledger. That is what makes "commit, then acknowledge" safe when
the collector dies between the two, or when a commit's outcome is unknown.

Size: over 400 lines because one transaction per received batch across every table
(commit before the MQTT ack); row shaping is in rows.py, the ledger in sequence.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

from edge_agent.collect import rows, sequence
from edge_agent.collect.envelope import Checker, Message, Rejected, classify

_log = logging.getLogger("edge_agent.collect.store")


@dataclass(frozen=True, slots=True)
class Item:
    """One received message, classified, with its table row when it has one."""

    topic: str
    payload: bytes
    parsed: Message | Rejected
    row: tuple[Any, ...] | None = None
    signed: tuple[Any, ...] | None = None  # signed_records row (the message has a proof)


@dataclass(slots=True)
class BatchResult:
    """What one batch did."""

    stored: int = 0  # new numbered messages written to their table
    duplicates: int = 0  # numbered messages already in the ledger (or twice in the batch)
    quarantined: int = 0  # new entries or re-deliveries of quarantined messages
    status: int = 0  # status messages applied
    other_kinds: int = 0  # of stored: kinds without a table of their own
    filled: int = 0  # sequence numbers that healed a gap
    detected: int = 0  # sequence numbers newly found missing
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, other: BatchResult) -> None:
        """Accumulate another result into this one."""
        for name in ("stored", "duplicates", "quarantined", "status", "other_kinds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.filled += other.filled
        self.detected += other.detected
        self.kinds.update(other.kinds)


def prepare(topic: str, payload: bytes, schemas: Checker) -> Item:
    """Classify one message and build its row (pure; no database; never raises)."""
    try:
        return _prepare(topic, payload, schemas)
    except Exception as exc:  # a bug must not turn one odd message into a crash loop
        _log.exception("Unexpected error while checking a message; quarantined topic=%s", topic)
        return Item(topic, payload, Rejected(reason=f"internal error: {exc!r}"[:300]))


def _prepare(topic: str, payload: bytes, schemas: Checker) -> Item:
    parsed = classify(payload, schemas)
    if isinstance(parsed, Rejected) or parsed.seq is None:
        return Item(topic, payload, parsed)
    raw = payload.decode("utf-8")
    try:
        if parsed.kind == "kpi":
            row = rows.kpi_row(parsed, raw)
        elif parsed.kind == "stop":
            row = rows.stop_row(parsed, raw)
        elif parsed.kind == "telemetry":
            row = rows.telemetry_row(parsed)
        elif parsed.kind == "health":
            row = rows.health_row(parsed)
        elif parsed.kind == "contract":
            row = rows.contract_status_row(parsed, raw)
        elif parsed.kind == "contract_period":
            row = rows.contract_period_row(parsed, raw)
        elif parsed.kind == "contract_alert":
            row = rows.contract_alert_row(parsed, raw)
        else:
            row = rows.other_row(parsed, topic, raw)
    except rows.RowError as exc:
        return Item(topic, payload, reject(parsed, f"row: {exc}"))
    return Item(topic, payload, parsed, row, rows.signed_row(parsed, raw))


def reject(msg: Message, reason: str) -> Rejected:
    """A checked message turned into a quarantine entry (keeps its identity)."""
    return Rejected(reason=reason, agent=msg.agent, kind=msg.kind, epoch=msg.epoch, seq=msg.seq)


def quarantine_item(item: Item, reason: str) -> Item:
    """The same delivery, now to be quarantined with ``reason`` (database refused it)."""
    parsed = item.parsed
    if isinstance(parsed, Message):
        return Item(item.topic, item.payload, reject(parsed, reason))
    return Item(item.topic, item.payload, replace(parsed, reason=f"{parsed.reason}; {reason}"))


def _key(parsed: Message | Rejected) -> tuple[str, str, int] | None:
    if parsed.agent is None or parsed.epoch is None or parsed.seq is None:
        return None
    return (parsed.agent, parsed.epoch, parsed.seq)


def digest(topic: str, payload: bytes) -> bytes:
    """Quarantine identity of a delivery: sha256 of topic, NUL, payload."""
    return hashlib.sha256(topic.encode("utf-8", "replace") + b"\x00" + payload).digest()


_LEDGER_SQL = """
INSERT INTO ledger (agent, epoch, seq, kind, ts, quarantined)
SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], %b::timestamptz[],
                     %b::boolean[])
ON CONFLICT DO NOTHING
RETURNING agent, epoch, seq
"""

_KPI_UPSERT = f"""
INSERT INTO kpi_records ({", ".join(rows.KPI_COLUMNS)})
VALUES ({", ".join(["%s"] * len(rows.KPI_COLUMNS))})
ON CONFLICT (agent, machine, window_name) DO UPDATE SET
{", ".join(f"{c} = EXCLUDED.{c}" for c in rows.KPI_COLUMNS[3:])},
    received_at = now(), updates = kpi_records.updates + 1
WHERE (EXCLUDED.final, EXCLUDED.revision) > (kpi_records.final, kpi_records.revision)
   OR ((EXCLUDED.final, EXCLUDED.revision) = (kpi_records.final, kpi_records.revision)
       AND CASE WHEN EXCLUDED.epoch = kpi_records.epoch THEN EXCLUDED.seq > kpi_records.seq
                ELSE EXCLUDED.ts > kpi_records.ts END)
"""  # noqa: S608 - built from constant column names

_KPI_REVISION = """
INSERT INTO kpi_revisions (agent, machine, window_name, revision, data, raw, epoch, seq, ts)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""

_STOP_UPSERT = f"""
INSERT INTO stop_events ({", ".join(rows.STOP_COLUMNS)})
VALUES ({", ".join(["%s"] * len(rows.STOP_COLUMNS))})
ON CONFLICT (agent, event_id) DO UPDATE SET
{", ".join(f"{c} = EXCLUDED.{c}" for c in rows.STOP_COLUMNS[2:])},
    received_at = now(), updates = stop_events.updates + 1
WHERE ((EXCLUDED.end_at IS NOT NULL) > (stop_events.end_at IS NOT NULL))
   OR ((EXCLUDED.end_at IS NOT NULL) = (stop_events.end_at IS NOT NULL)
       AND CASE WHEN EXCLUDED.epoch = stop_events.epoch THEN EXCLUDED.seq > stop_events.seq
                ELSE EXCLUDED.ts > stop_events.ts END)
"""  # noqa: S608 - built from constant column names


def _later(table: str) -> str:
    """SQL: the incoming row is a later message than the stored one of ``table``."""
    return (
        f"CASE WHEN EXCLUDED.epoch = {table}.epoch THEN EXCLUDED.seq > {table}.seq "
        f"ELSE EXCLUDED.ts > {table}.ts END"
    )


def _upsert(table: str, columns: Sequence[str], key: int, when: str) -> str:
    """INSERT ... ON CONFLICT (first ``key`` columns) DO UPDATE ... WHERE ``when``."""
    return f"""
INSERT INTO {table} ({", ".join(columns)})
VALUES ({", ".join(["%s"] * len(columns))})
ON CONFLICT ({", ".join(columns[:key])}) DO UPDATE SET
{", ".join(f"{c} = EXCLUDED.{c}" for c in columns[key:])},
    received_at = now(), updates = {table}.updates + 1
WHERE {when}
"""  # noqa: S608 - built from constant names


# Contract status: the later evaluation instant wins; the same instant: the later message.
_CONTRACT_STATUS_UPSERT = _upsert(
    "device_contract_status",
    rows.CONTRACT_STATUS_COLUMNS,
    2,
    "EXCLUDED.at > device_contract_status.at OR (EXCLUDED.at = device_contract_status.at "
    f"AND {_later('device_contract_status')})",
)
# Contract period: a higher revision replaces; the same revision: the later message.
_CONTRACT_PERIOD_UPSERT = _upsert(
    "device_contract_periods",
    rows.CONTRACT_PERIOD_COLUMNS,
    3,
    "EXCLUDED.revision > device_contract_periods.revision OR (EXCLUDED.revision = "
    f"device_contract_periods.revision AND {_later('device_contract_periods')})",
)
_CONTRACT_PERIOD_REVISION = """
INSERT INTO device_contract_period_revisions (agent, contract, period, revision, data, raw,
                                              epoch, seq, ts)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""
_CONTRACT_ALERT = f"""
INSERT INTO device_contract_alerts ({", ".join(rows.CONTRACT_ALERT_COLUMNS)})
VALUES ({", ".join(["%s"] * len(rows.CONTRACT_ALERT_COLUMNS))})
ON CONFLICT DO NOTHING
"""  # noqa: S608 - built from constant column names
_SIGNED = f"""
INSERT INTO signed_records ({", ".join(rows.SIGNED_COLUMNS)})
SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], %b::timestamptz[],
                     %b::boolean[], %b::text[])
ON CONFLICT DO NOTHING
"""  # noqa: S608 - built from constant column names

_TELEMETRY = """
INSERT INTO telemetry (agent, epoch, seq, ts, device, data)
SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::timestamptz[], %b::text[],
                     %b::jsonb[])
ON CONFLICT DO NOTHING
"""

_HEALTH = """
INSERT INTO health (agent, epoch, seq, ts, uptime_s, cpu_percent, rss_bytes, backlog,
                    clock_synced, data)
SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::timestamptz[], %b::float8[],
                     %b::float8[], %b::bigint[], %b::bigint[], %b::boolean[], %b::jsonb[])
ON CONFLICT DO NOTHING
"""

_OTHER = """
INSERT INTO other_records (agent, epoch, seq, kind, ts, topic, validated, data, raw)
SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], %b::timestamptz[],
                     %b::text[], %b::boolean[], %b::jsonb[], %b::text[])
ON CONFLICT DO NOTHING
"""

_QUARANTINE = """
INSERT INTO quarantine (digest, topic, payload, reason, agent, kind, epoch, seq)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (digest) DO UPDATE SET last_seen = now(), times_seen = quarantine.times_seen + 1
"""

_STATUS = """
UPDATE agents SET status = %s, site = coalesce(%s, site), status_at = %s
WHERE agent = %s AND (status_at IS NULL OR status_at <= %s)
"""

_AGENT_COUNTERS = """
UPDATE agents AS a SET
    messages = a.messages + u.messages,
    duplicates = a.duplicates + u.duplicates,
    quarantined = a.quarantined + u.quarantined,
    other_kinds = a.other_kinds + u.other_kinds,
    current_epoch = CASE WHEN u.last_ts IS NOT NULL
                              AND (a.last_ts IS NULL OR u.last_ts >= a.last_ts)
                         THEN u.epoch ELSE a.current_epoch END,
    last_ts = greatest(a.last_ts, u.last_ts),
    reported_backlog = CASE WHEN u.backlog_at IS NOT NULL
                                 AND (a.reported_backlog_at IS NULL
                                      OR u.backlog_at >= a.reported_backlog_at)
                            THEN u.backlog ELSE a.reported_backlog END,
    reported_backlog_at = greatest(a.reported_backlog_at, u.backlog_at)
FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[],
            %b::timestamptz[], %b::text[], %b::bigint[], %b::timestamptz[])
     AS u(agent, messages, duplicates, quarantined, other_kinds, last_ts, epoch, backlog,
          backlog_at)
WHERE a.agent = u.agent
"""

_STREAM_UPSERT = """
INSERT INTO agent_streams (agent, epoch, last_seq, last_ts, messages, duplicates,
                           gaps_detected, gaps_filled)
SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::timestamptz[], %b::bigint[],
                     %b::bigint[], %b::bigint[], %b::bigint[])
ON CONFLICT (agent, epoch) DO UPDATE SET
    last_seq = greatest(agent_streams.last_seq, EXCLUDED.last_seq),
    last_ts = greatest(agent_streams.last_ts, EXCLUDED.last_ts),
    last_seen = now(),
    messages = agent_streams.messages + EXCLUDED.messages,
    duplicates = agent_streams.duplicates + EXCLUDED.duplicates,
    gaps_detected = agent_streams.gaps_detected + EXCLUDED.gaps_detected,
    gaps_filled = agent_streams.gaps_filled + EXCLUDED.gaps_filled
"""


def _columns(data: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[r[i] for r in data] for i in range(width)]


@dataclass(slots=True)
class _StreamDelta:
    seqs: list[int] = field(default_factory=list)
    duplicates: int = 0
    last_ts: dt.datetime | None = None


def write(conn: psycopg.Connection, items: Sequence[Item]) -> BatchResult:
    """Store ``items`` inside the caller's open transaction (see the module docstring)."""
    result = BatchResult()
    cur = conn.cursor()

    # Phase 1, rows that only this message owns (no agent lock needed). Locks are taken in
    # one global order (ledger keys sorted, then record keys sorted, then quarantine
    # digests sorted, then agents sorted in phase 2), so concurrent instances cannot deadlock.
    # Ledger: first copy of a number in the batch is the candidate, the rest duplicates.
    candidates: dict[tuple[str, str, int], Item] = {}
    batch_dups: list[tuple[str, str, int]] = []
    for item in items:
        key = _key(item.parsed)
        if key is None:
            continue
        if key in candidates:
            batch_dups.append(key)
        else:
            candidates[key] = item
    new_keys: set[tuple[str, str, int]] = set()
    if candidates:
        keys = sorted(candidates)
        cur.execute(
            _LEDGER_SQL,
            [
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [candidates[k].parsed.kind or "" for k in keys],
                [p.ts if isinstance(p := candidates[k].parsed, Message) else None for k in keys],
                [isinstance(candidates[k].parsed, Rejected) for k in keys],
            ],
        )
        new_keys = {(r[0], r[1], r[2]) for r in cur.fetchall()}
    duplicate_keys = [k for k in candidates if k not in new_keys] + batch_dups
    result.duplicates = len(duplicate_keys)

    per_agent: dict[str, Counter[str]] = defaultdict(Counter)
    for agent, _epoch, _seq in duplicate_keys:
        per_agent[agent]["duplicates"] += 1

    fresh = [candidates[k] for k in sorted(new_keys)]
    _write_rows(cur, fresh, result, per_agent)
    _quarantine(cur, items, duplicate_keys, result, per_agent)

    # Phase 2, per-agent bookkeeping under the agents' row locks (held to the commit, so
    # two instances serialise per agent only for this short part).
    _lock_agents(cur, items)
    # Streams and gaps.
    streams: dict[tuple[str, str], _StreamDelta] = defaultdict(_StreamDelta)
    for key in new_keys:
        delta = streams[(key[0], key[1])]
        delta.seqs.append(key[2])
        parsed = candidates[key].parsed
        if isinstance(parsed, Message) and (delta.last_ts is None or parsed.ts > delta.last_ts):
            delta.last_ts = parsed.ts
    for agent, epoch, _seq in duplicate_keys:
        streams[(agent, epoch)].duplicates += 1
    if streams:
        _advance_streams(cur, streams, result)

    latest: dict[str, tuple[dt.datetime, str]] = {}
    backlog: dict[str, tuple[dt.datetime, int]] = {}
    for item in fresh:
        p = item.parsed
        if isinstance(p, Message):
            if p.agent not in latest or p.ts >= latest[p.agent][0]:
                latest[p.agent] = (p.ts, p.epoch)
            b = rows.health_backlog(p) if p.kind == "health" else None
            if b is not None and (p.agent not in backlog or p.ts >= backlog[p.agent][0]):
                backlog[p.agent] = (p.ts, b)
    for item in items:
        p = item.parsed
        if isinstance(p, Message) and p.seq is None:
            state, site = p.data.get("state"), p.data.get("site")
            cur.execute(
                _STATUS,
                (
                    state if isinstance(state, str) else None,
                    site if isinstance(site, str) else None,
                    p.ts,
                    p.agent,
                    p.ts,
                ),
            )
            result.status += 1
    agents = sorted(set(per_agent) | set(latest) | set(backlog))
    if agents:
        cur.execute(
            _AGENT_COUNTERS,
            [
                agents,
                [per_agent[a]["messages"] for a in agents],
                [per_agent[a]["duplicates"] for a in agents],
                [per_agent[a]["quarantined"] for a in agents],
                [per_agent[a]["other_kinds"] for a in agents],
                [latest[a][0] if a in latest else None for a in agents],
                [latest[a][1] if a in latest else None for a in agents],
                [backlog[a][1] if a in backlog else None for a in agents],
                [backlog[a][0] if a in backlog else None for a in agents],
            ],
        )
    return result


def _lock_agents(cur: psycopg.Cursor[Any], items: Iterable[Item]) -> None:
    agents = sorted({i.parsed.agent for i in items if i.parsed.agent is not None})
    if agents:
        cur.execute(
            "INSERT INTO agents (agent) SELECT a FROM unnest(%b::text[]) AS a ORDER BY a "
            "ON CONFLICT (agent) DO UPDATE SET last_seen = now()",
            [agents],
        )


def _advance_streams(
    cur: psycopg.Cursor[Any],
    streams: dict[tuple[str, str], _StreamDelta],
    result: BatchResult,
) -> None:
    keys = sorted(streams)
    cur.execute(
        "SELECT s.agent, s.epoch, s.last_seq FROM agent_streams s "
        "JOIN unnest(%b::text[], %b::text[]) AS k(agent, epoch) "
        "ON s.agent = k.agent AND s.epoch = k.epoch "
        "ORDER BY s.agent, s.epoch FOR UPDATE OF s",
        [[k[0] for k in keys], [k[1] for k in keys]],
    )
    last = {(r[0], r[1]): int(r[2]) for r in cur.fetchall()}
    removed: list[tuple[str, str, int]] = []
    added: list[tuple[str, str, int, int]] = []
    upserts: list[tuple[Any, ...]] = []
    for key in keys:
        delta = streams[key]
        last_seq = last.get(key, 0)
        gaps: list[sequence.Gap] = []
        late = [s for s in delta.seqs if s <= last_seq]
        if late:
            cur.execute(
                "SELECT first_seq, last_seq FROM seq_gaps WHERE agent = %s AND epoch = %s "
                "AND last_seq >= %s AND first_seq <= %s FOR UPDATE",
                (key[0], key[1], min(late), max(late)),
            )
            gaps = [(int(a), int(b)) for a, b in cur.fetchall()]
        adv = sequence.advance(last_seq, gaps, delta.seqs)
        result.detected += adv.detected
        result.filled += adv.filled
        removed.extend((key[0], key[1], g[0]) for g in adv.removed)
        added.extend((key[0], key[1], g[0], g[1]) for g in adv.added)
        upserts.append(
            (
                key[0],
                key[1],
                adv.last_seq,
                delta.last_ts,
                len(delta.seqs),
                delta.duplicates,
                adv.detected,
                adv.filled,
            )
        )
    if removed:
        cur.execute(
            "DELETE FROM seq_gaps g USING unnest(%b::text[], %b::text[], %b::bigint[]) "
            "AS r(agent, epoch, first_seq) "
            "WHERE g.agent = r.agent AND g.epoch = r.epoch AND g.first_seq = r.first_seq",
            _columns(removed, 3),
        )
    if added:
        cur.execute(
            "INSERT INTO seq_gaps (agent, epoch, first_seq, last_seq) "
            "SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::bigint[])",
            _columns(added, 4),
        )
    cur.execute(_STREAM_UPSERT, _columns(upserts, 8))


def _write_rows(
    cur: psycopg.Cursor[Any],
    fresh: Sequence[Item],
    result: BatchResult,
    per_agent: dict[str, Counter[str]],
) -> None:
    by_kind: dict[str, list[Item]] = defaultdict(list)
    for item in fresh:
        p = item.parsed
        if isinstance(p, Message) and item.row is not None:
            by_kind[p.kind if p.kind in rows.TABLE_KINDS else ""].append(item)
            per_agent[p.agent]["messages"] += 1
            result.kinds[p.kind] += 1
            result.stored += 1
            if p.kind not in rows.TABLE_KINDS:
                per_agent[p.agent]["other_kinds"] += 1
                result.other_kinds += 1
        elif isinstance(p, Rejected) and p.agent is not None:
            per_agent[p.agent]["messages"] += 1
    if kpi := by_kind.get("kpi"):
        data = sorted((i.row for i in kpi if i.row is not None), key=lambda r: r[:3])
        cur.executemany(_KPI_UPSERT, data)
        final_index = rows.KPI_COLUMNS.index("final")
        wanted = [rows.KPI_COLUMNS.index(c) for c in ("agent", "machine", "window_name")]
        revision_index = rows.KPI_COLUMNS.index("revision")
        tail = [rows.KPI_COLUMNS.index(c) for c in ("data", "raw", "epoch", "seq", "ts")]
        revisions = [
            (*(r[i] for i in wanted), r[revision_index], *(r[i] for i in tail))
            for r in data
            if r[final_index]
        ]
        if revisions:
            cur.executemany(_KPI_REVISION, revisions)
    if stops := by_kind.get("stop"):
        data = sorted((i.row for i in stops if i.row is not None), key=lambda r: r[:2])
        cur.executemany(_STOP_UPSERT, data)
    if tel := by_kind.get("telemetry"):
        cur.execute(_TELEMETRY, _columns([i.row for i in tel if i.row is not None], 6))
    if health := by_kind.get("health"):
        cur.execute(_HEALTH, _columns([i.row for i in health if i.row is not None], 10))
    if other := by_kind.get(""):
        cur.execute(_OTHER, _columns([i.row for i in other if i.row is not None], 9))
    _write_contracts(cur, by_kind)
    signed = sorted(
        (i.signed for i in fresh if i.signed is not None and isinstance(i.parsed, Message)),
        key=lambda r: r[:3],
    )
    if signed:
        cur.execute(_SIGNED, _columns(signed, len(rows.SIGNED_COLUMNS)))


def _write_contracts(cur: psycopg.Cursor[Any], by_kind: dict[str, list[Item]]) -> None:
    if status := by_kind.get("contract"):
        data = sorted((i.row for i in status if i.row is not None), key=lambda r: r[:2])
        cur.executemany(_CONTRACT_STATUS_UPSERT, data)
    if periods := by_kind.get("contract_period"):
        data = sorted((i.row for i in periods if i.row is not None), key=lambda r: r[:4])
        cur.executemany(_CONTRACT_PERIOD_UPSERT, data)
        cols = rows.CONTRACT_PERIOD_COLUMNS
        wanted = [cols.index(c) for c in ("agent", "contract", "period", "revision")]
        tail = [cols.index(c) for c in ("data", "raw", "epoch", "seq", "ts")]
        cur.executemany(
            _CONTRACT_PERIOD_REVISION, [tuple(r[i] for i in (*wanted, *tail)) for r in data]
        )
    if alerts := by_kind.get("contract_alert"):
        data = sorted((i.row for i in alerts if i.row is not None), key=lambda r: r[:2])
        cur.executemany(_CONTRACT_ALERT, data)


def _quarantine(
    cur: psycopg.Cursor[Any],
    items: Sequence[Item],
    duplicate_keys: Sequence[tuple[str, str, int]],
    result: BatchResult,
    per_agent: dict[str, Counter[str]],
) -> None:
    entries = []
    duplicates = set(duplicate_keys)
    for item in items:
        p = item.parsed
        if not isinstance(p, Rejected):
            continue
        entries.append(
            (
                digest(item.topic, item.payload),
                item.topic.replace("\x00", ""),
                item.payload,
                p.reason.replace("\x00", ""),
                p.agent,
                p.kind,
                p.epoch,
                p.seq,
            )
        )
        result.quarantined += 1
        key = _key(p)
        if p.agent is not None and (key is None or key not in duplicates):
            per_agent[p.agent]["quarantined"] += 1
    if entries:
        entries.sort(key=lambda e: e[0])
        cur.executemany(_QUARANTINE, entries)
