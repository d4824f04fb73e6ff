"""The outbox: messages waiting for a broker acknowledgement, as SQL on a writer connection.

Every message the agent publishes is first a row here (``seq INTEGER PRIMARY KEY
AUTOINCREMENT``: one monotonically increasing sequence per agent and epoch, never
reused; the sequence ledger beside the file keeps it so when the file is lost).
KPI records and stop events are also kept in their own tables keyed by
``record_key`` and marked ``published`` when their outbox row is acknowledged, so
retention can keep unpublished summaries and drop old published ones.

These functions run on the buffer's writer thread only; they do not commit unless
stated and know nothing about MQTT. Guarantees: :func:`insert` commits before it
returns (with the configured ``synchronous`` mode), :func:`fetch` returns rows in
``seq`` order, :func:`fetch_lanes` returns each priority class's rows in ``seq``
order using the ``(priority, seq)`` index (never a table scan), :func:`ack` is
idempotent.
"""

from __future__ import annotations

import enum
import sqlite3
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from edge_agent.buffer.telerefs import FrameRef, TextCache


class Priority(enum.IntEnum):
    """Message priority: a *smaller* number is more important (like ``nice``).

    Under the disk budget unpublished rows are evicted largest number first;
    rows at ``HIGH`` (0 or less) and every ``kpi``/``stop`` row are never evicted.
    Any integer is accepted; these are the values the agent uses.
    """

    HIGH = 0  # KPI records and stop events: never evicted
    MEDIUM = 5  # health
    LOW = 9  # raw telemetry


class MessageKind(str, enum.Enum):
    """What the agent publishes; each kind carries its priority and eviction rule.

    The value is the envelope's ``kind``. KPI records and stop events are the product:
    published first, never evicted, and also kept in a table of their own (keyed by
    ``record_key``) so a later revision replaces the stored record. Contract alerts and
    period records are never evicted either; a contract status (retained, superseded
    by the next one) may be dropped from memory when the outbox cannot take it.
    """

    KPI = "kpi"
    STOP = "stop"
    HEALTH = "health"
    TELEMETRY = "telemetry"
    CONTRACT = "contract"
    CONTRACT_ALERT = "contract_alert"
    CONTRACT_PERIOD = "contract_period"
    # Evidence (edge_agent.evidence): chained records, as important as KPI records.
    GAP = "gap"
    CONFIG = "config"
    KEY = "key"

    @property
    def priority(self) -> Priority:
        """Outbox priority of this kind."""
        return _PRIORITY[self]

    @property
    def evictable(self) -> bool:
        """Whether unpublished rows of this kind may be deleted under the disk budget."""
        return (
            self not in RECORD_KINDS
            and self not in _EVIDENCE_KINDS
            and self not in _CONTRACT_RECORDS
        )


_PRIORITY = {
    MessageKind.KPI: Priority.HIGH,
    MessageKind.STOP: Priority.HIGH,
    MessageKind.HEALTH: Priority.MEDIUM,
    MessageKind.TELEMETRY: Priority.LOW,
    MessageKind.CONTRACT: Priority.HIGH,
    MessageKind.CONTRACT_ALERT: Priority.HIGH,
    MessageKind.CONTRACT_PERIOD: Priority.HIGH,
    MessageKind.GAP: Priority.HIGH,
    MessageKind.CONFIG: Priority.HIGH,
    MessageKind.KEY: Priority.HIGH,
}
# Links of the evidence chain: evicting one would break the chain for every consumer.
_EVIDENCE_KINDS = frozenset({MessageKind.GAP, MessageKind.CONFIG, MessageKind.KEY})
# Contract alerts and period records are settlement evidence: never evicted either.
_CONTRACT_RECORDS = frozenset({MessageKind.CONTRACT_ALERT, MessageKind.CONTRACT_PERIOD})
RECORD_KINDS: dict[MessageKind, str] = {
    MessageKind.KPI: "kpi_records",
    MessageKind.STOP: "stop_events",
}

ACK_CHUNK = 500  # below SQLite's historic 999 host-parameter limit

# Kinds whose ``data`` is stored zlib-compressed (a BLOB) when that is smaller: raw
# telemetry is most of the outbox's bytes (a 125-value message: 1,250 bytes of JSON,
# about 540 compressed). Records, evidence and health stay JSON text (SQL reads them).
COMPRESSED_KINDS = frozenset({"telemetry"})
_COMPRESS_MIN = 256  # shorter payloads rarely shrink by more than zlib's own bytes


#: First bytes of a telemetry row stored as a reference to frames (:mod:`.telerefs`):
#: a text payload starts with ``{``, a zlib one with 0x78.
REF_PREFIX = b"\x00F"


def stored_data(kind: str, data: str) -> str | bytes:
    """What the ``data`` column holds for a message: its JSON text, or zlib of it (BLOB)."""
    if kind not in COMPRESSED_KINDS or len(data) < _COMPRESS_MIN:
        return data
    raw = data.encode()
    small = zlib.compress(raw, 6)
    return small if len(small) < len(raw) else data


def loaded_data(stored: str | bytes) -> str:
    """The JSON text of a stored ``data`` column (byte-identical to what was stored)."""
    return stored if isinstance(stored, str) else zlib.decompress(stored).decode()


# Message kinds whose payload is also kept as a record (table, record key required).
RECORD_TABLES: dict[str, str] = {k.value: table for k, table in RECORD_KINDS.items()}


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One message waiting to be published (``data`` is the JSON text of the payload data)."""

    seq: int
    kind: str
    priority: int
    topic: str
    data: str
    created: float
    retain: bool
    proof: str | None = None  # JSON text of the envelope's "proof" (signed kinds only)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMessage:
    """A message to store (``data`` already serialised to JSON text)."""

    kind: str
    priority: int
    topic: str
    data: str
    created: float
    retain: bool = False
    record_key: str | None = None
    # Raw telemetry whose values are frames already stored: stored as a reference to
    # them when exact (edge_agent.buffer.telerefs), else as ``data``.
    frames: FrameRef | None = None


class Linker(Protocol):
    """One transaction's evidence linking (:class:`edge_agent.evidence.chain.Batch`)."""

    prelude: list[NewMessage]

    def link(self, seq: int, message: NewMessage) -> str | None:
        """Sign/chain an inserted row; its proof JSON text, or None when it carries none."""

    def finish(self) -> None:
        """Store the chain head (same transaction)."""


class Chainer(Protocol):
    """What the outbox needs from the evidence chain (:class:`edge_agent.evidence.chain.Chain`)."""

    def begin(self, con: sqlite3.Connection) -> Linker:
        """Start linking the current transaction."""


def insert(
    con: sqlite3.Connection,
    messages: Sequence[NewMessage],
    *,
    chain: Chainer | None = None,
    texts: TextCache | None = None,
) -> list[int]:
    """Insert messages (and their kpi/stop records) in one committed transaction; return seqs."""
    con.execute("BEGIN IMMEDIATE")
    try:
        seqs = insert_rows(con, messages, chain=chain, texts=texts)
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    return seqs


def insert_rows(
    con: sqlite3.Connection,
    messages: Sequence[NewMessage],
    *,
    chain: Chainer | None = None,
    texts: TextCache | None = None,
) -> list[int]:
    """Insert messages inside the caller's transaction (no commit); return their seqs.

    With an evidence ``chain``, each signed row gets its proof in the same transaction
    (after SQLite assigned its seq), preceded by any row the chain must write first (a
    segment start, a key rotation); only the seqs of ``messages`` are returned. A
    message with exact ``frames`` is stored as their reference, its text kept in
    ``texts`` (:mod:`.telerefs`; without a cache it is stored as text).
    """
    if texts is not None and any(m.frames is not None for m in messages):
        from edge_agent.buffer.telerefs import resolve
    seqs: list[int] = []
    linker = chain.begin(con) if chain is not None else None
    prelude = linker.prelude if linker is not None else []
    for i, m in enumerate([*prelude, *messages]):
        ref = resolve(m.frames) if texts is not None and m.frames is not None else None
        cur = con.execute(
            "INSERT INTO outbox(kind, priority, topic, data, created, retain, record_key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                m.kind,
                int(m.priority),
                m.topic,
                stored_data(m.kind, m.data) if ref is None else ref,
                m.created,
                int(m.retain),
                m.record_key,
            ),
        )
        seq = int(cur.lastrowid or 0)
        if ref is not None and texts is not None:
            texts.put(seq, m.data)
        if linker is not None and (text := linker.link(seq, m)) is not None:
            con.execute("UPDATE outbox SET proof = ? WHERE seq = ?", (text, seq))
        if i >= len(prelude):
            seqs.append(seq)
        table = RECORD_TABLES.get(m.kind)
        if table is not None:
            key = m.record_key if m.record_key is not None else f"seq:{seq}"
            # A new revision of the same record replaces the stored one (keyed by record_key).
            con.execute(
                f"INSERT INTO {table}(record_key, created, seq, data, published) "  # noqa: S608
                "VALUES (?, ?, ?, ?, NULL) ON CONFLICT(record_key) DO UPDATE SET "
                "created = excluded.created, seq = excluded.seq, data = excluded.data, "
                "published = NULL",
                (key, m.created, seq, m.data),
            )
    if linker is not None:
        linker.finish()
    return seqs


def fetch(
    con: sqlite3.Connection,
    *,
    after: int,
    limit: int,
    max_seq: int | None = None,
    texts: TextCache | None = None,
) -> list[OutboxRow]:
    """Rows with ``after < seq (<= max_seq)`` in seq order, at most ``limit``."""
    if limit <= 0:
        return []
    if max_seq is None:
        cur = con.execute(
            "SELECT seq, kind, priority, topic, data, created, retain, proof FROM outbox "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
    else:
        cur = con.execute(
            "SELECT seq, kind, priority, topic, data, created, retain, proof FROM outbox "
            "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (after, max_seq, limit),
        )
    return _rows(con, cur.fetchall(), texts)


def _rows(
    con: sqlite3.Connection, found: list[tuple[Any, ...]], texts: TextCache | None
) -> list[OutboxRow]:
    """Rows as read, references to frames materialised (a row that cannot be is left out)."""
    refs = [(r[0], r[4]) for r in found if type(r[4]) is bytes and r[4][:2] == REF_PREFIX]
    made: dict[int, str | None] = {}
    if refs:
        from edge_agent.buffer.telerefs import materialise

        made = materialise(con, refs, texts)
    out = []
    for r in found:
        data = made.get(r[0]) if refs and r[0] in made else loaded_data(r[4])
        if data is not None:
            out.append(OutboxRow(r[0], r[1], r[2], r[3], data, r[5], bool(r[6]), r[7]))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class LaneQuery:
    """One read of a priority class: rows with ``priority`` and ``after < seq (<= max_seq)``."""

    priority: int
    after: int
    limit: int
    max_seq: int | None = None


def priorities(con: sqlite3.Connection) -> list[int]:
    """The distinct priorities present in the outbox, most important (smallest) first.

    A skip-scan over the ``(priority, seq)`` index: one ``min()`` seek per class,
    so the cost grows with the number of classes, not with the number of rows.
    """
    cur = con.execute(
        "WITH RECURSIVE p(v) AS ("
        "SELECT (SELECT min(priority) FROM outbox) UNION ALL "
        "SELECT (SELECT min(priority) FROM outbox WHERE priority > p.v) FROM p "
        "WHERE p.v IS NOT NULL) "
        "SELECT v FROM p WHERE v IS NOT NULL"
    )
    return [int(r[0]) for r in cur]


def fetch_class(
    con: sqlite3.Connection, query: LaneQuery, texts: TextCache | None = None
) -> list[OutboxRow]:
    """Rows of one priority class with ``after < seq (<= max_seq)`` in seq order (index seek)."""
    if query.limit <= 0:
        return []
    # INDEXED BY: a seek on (priority, seq) whatever the statistics say. Left to the
    # planner, a seq range may be read through the rowid instead, filtering priority,
    # which scans the whole telemetry backlog to find a few KPI rows.
    if query.max_seq is None:
        cur = con.execute(
            "SELECT seq, kind, priority, topic, data, created, retain, proof "
            "FROM outbox INDEXED BY outbox_priority_seq "
            "WHERE priority = ? AND seq > ? ORDER BY seq LIMIT ?",
            (query.priority, query.after, query.limit),
        )
    else:
        cur = con.execute(
            "SELECT seq, kind, priority, topic, data, created, retain, proof "
            "FROM outbox INDEXED BY outbox_priority_seq "
            "WHERE priority = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (query.priority, query.after, query.max_seq, query.limit),
        )
    return _rows(con, cur.fetchall(), texts)


def fetch_lanes(
    con: sqlite3.Connection,
    queries: Sequence[LaneQuery],
    *,
    discover: bool = False,
    texts: TextCache | None = None,
) -> tuple[list[int] | None, list[list[OutboxRow]]]:
    """Run several class reads (and optionally :func:`priorities`) in one writer job.

    Args:
        con: The writer connection.
        queries: Class reads, answered in the same order.
        discover: Also list the priorities present (first, before the reads).
        texts: Texts of rows stored as references to frames (:mod:`.telerefs`).

    Returns:
        ``(priorities or None, rows per query)``.
    """
    found = priorities(con) if discover else None
    return found, [fetch_class(con, q, texts) for q in queries]


def ack(
    con: sqlite3.Connection, seqs: Iterable[int], now: float, texts: TextCache | None = None
) -> int:
    """Delete acknowledged rows and mark their records published; returns rows deleted.

    One statement per chunk of 500 seqs (``IN (?, ...)``), not one per row: acks
    arrive in bursts of the in-flight window.
    """
    items = [int(s) for s in seqs]
    if not items:
        return 0
    con.execute("BEGIN IMMEDIATE")
    try:
        deleted = delete_acked(con, items, now)
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    if texts is not None:
        texts.drop(items)
    return deleted


def delete_acked(con: sqlite3.Connection, items: Sequence[int], now: float) -> int:
    """:func:`ack` inside the caller's transaction (no commit); returns rows deleted."""
    deleted = 0
    for i in range(0, len(items), ACK_CHUNK):
        chunk = items[i : i + ACK_CHUNK]
        marks = ",".join("?" * len(chunk))
        cur = con.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", chunk)  # noqa: S608
        deleted += max(cur.rowcount, 0)
        for table in RECORD_TABLES.values():
            con.execute(
                f"UPDATE {table} SET published = ? "  # noqa: S608 - fixed table names
                f"WHERE published IS NULL AND seq IN ({marks})",
                [now, *chunk],
            )
    return deleted


def bounds(con: sqlite3.Connection) -> tuple[int, int, int]:
    """``(count, min seq, last seq ever allocated)`` of the outbox (0 when empty)."""
    count, low = con.execute("SELECT count(*), coalesce(min(seq), 0) FROM outbox").fetchone()
    row = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    return int(count), int(low), int(row[0]) if row else 0
