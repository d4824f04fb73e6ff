"""The :class:`Buffer`: the agent's asyncio-facing durable store (one SQLite file).

What it does: accepts readings, comms events and state intervals without blocking
(batched by the writer thread), stores every outgoing message in the outbox
before anything publishes it, hands the uplink rows in ``seq`` order and deletes
them on acknowledgement, keeps the calculator's state blobs, and reports sizes,
backlog, drop counts and the disk-full condition in :meth:`Buffer.stats`.

What it does not do: talk MQTT, build message envelopes, or compute anything.

Guarantees:

* ``await publish(...)`` returns only after the row is committed
  (``synchronous=FULL`` by default), so a summary that was handed over survives a
  crash or power cut; its ``seq`` is unique and increasing within the buffer's
  :attr:`Buffer.epoch` and never reused, even when the database file is lost,
  replaced or rolled back (the sequence ledger beside it, :mod:`.sequence`, keeps
  the numbering; :mod:`.recovery` reports what was lost as a gap).
* Rows are never evicted from the outbox while they are high priority (KPI, stop).
* The event loop never waits on a commit: every SQLite call runs on the writer
  thread; coroutines await its futures.

Size: over 400 lines because the :class:`Buffer` facade, the buffer's one public
surface; the work is in writer.py, schema.py, retention.py, outbox.py, acks.py, sequence.py, and
most of the length is the API's docstrings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edge_agent.buffer import journal, outbox, recovery
from edge_agent.buffer.acks import AckBatcher
from edge_agent.buffer.blocks import Cut
from edge_agent.buffer.config import RawMode, StorageConfig
from edge_agent.buffer.outbox import NewMessage, OutboxRow, Priority
from edge_agent.buffer.rows import INSERT, interval_row
from edge_agent.buffer.schema import open_database, plan_size
from edge_agent.buffer.sequence import LedgerError, SeqLedger, ledger_path, read_ledger
from edge_agent.buffer.writer import Writer
from edge_agent.columns import ColumnPoll
from edge_agent.errors import StorageFull
from edge_agent.model import CommsEvent, Reading

if TYPE_CHECKING:
    from edge_agent.buffer.telerefs import FrameRef
    from edge_agent.evidence.chain import Chain

log = logging.getLogger(__name__)

T = TypeVar("T")
# Rows the evidence chain may add to one transaction (segment start, gaps, rotation);
# reserved in the sequence ledger with the caller's rows (edge_agent.evidence.chain).
CHAIN_PRELUDE_MAX = 102
_UPSERT_STATE = (
    "INSERT INTO state(key, value, updated) VALUES (?, ?, ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated = excluded.updated"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One message for :meth:`Buffer.publish_many` (same fields as :meth:`Buffer.publish`).

    ``data`` is the ``data`` part, or its JSON text when the producer encoded it already.
    """

    kind: str
    topic: str
    data: Mapping[str, Any] | str
    priority: int
    retain: bool = False
    record_key: str | None = None
    # Raw telemetry: its values as frames between two cuts (edge_agent.buffer.telerefs).
    frames: FrameRef | None = None


# check_circular=False: payloads are trees built by the agent (no cycles); the check
# costs a dict insert and delete per list and dict, about a quarter of the encoding
# time of a telemetry message.
_ENCODE = json.JSONEncoder(
    separators=(",", ":"), allow_nan=False, ensure_ascii=False, check_circular=False
).encode


def dumps(data: Mapping[str, Any] | str) -> str:
    """Compact JSON; NaN/Infinity are refused (they are not JSON; the calculator emits null).

    A ``str`` is taken as JSON text already encoded by its producer (telemetry).
    """
    if isinstance(data, str):
        return data
    return _ENCODE(data)


class Buffer:
    """Durable SQLite buffer and outbox for one agent.

    Args:
        config: The ``[storage]`` section.
        agent_id: The agent's id (recorded for diagnostics; the envelope is built by the uplink).
        clock: Wall clock (UNIX seconds), injectable for tests.
        chain: The evidence chain (:class:`edge_agent.evidence.chain.Chain`): signed kinds get
            their proof, and chained ones their link, in the transaction that numbers them.
    """

    def __init__(
        self,
        config: StorageConfig,
        agent_id: str,
        *,
        clock: Callable[[], float] = time.time,
        chain: Chain | None = None,
    ) -> None:
        self.config = config
        self.agent_id = agent_id
        self._clock = clock
        self.chain = chain
        self._writer: Writer | None = None
        self._ledger: SeqLedger | None = None
        self._listeners: list[Callable[[], None]] = []
        self.moved_aside: Path | None = None
        self.epoch = ""
        self.recovered: dict[str, Any] | None = None
        # ack_later: telemetry deletes batched (edge_agent.buffer.acks).
        self._acks = AckBatcher(lambda: self._writer, clock)

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        """Open the database (create, migrate, replace a corrupt file) and start the writer.

        Also reconciles the numbering with the sequence ledger (:mod:`.recovery`):
        :attr:`epoch` is set, and :attr:`recovered` holds the gap report when
        messages were lost with the old database (published by :meth:`publish_gaps`).

        Raises:
            StorageFull: The disk is full even for an empty database.
            RuntimeError: The file's schema is newer than this agent.
            sqlite3.Error: Any other failure to open (permissions, locked).
            OSError: The sequence ledger cannot be written.
        """
        con, moved, outcome, ledger = await asyncio.to_thread(self._open_sync)
        self.moved_aside = moved
        self.epoch = outcome.epoch
        self.recovered = outcome.gap.as_data() if outcome.gap is not None else None
        self._ledger = ledger
        self._writer = Writer(con, self.config, clock=self._clock)
        self._writer.start()
        chain = self.chain
        if chain is not None:
            # A segment start or a pending key rotation is committed now, before any record.
            await self._call(
                self._writer.durable(
                    self._numbered(lambda con: outbox.insert(con, [], chain=chain), 0)
                )
            )

    def _open_sync(self) -> tuple[Any, Path | None, recovery.Outcome, SeqLedger]:
        path = self.config.path
        try:
            existed = path.stat().st_size > 0
        except FileNotFoundError:
            existed = False
        # Both must be read before SQLite opens the file: opening discards an invalid WAL.
        wal_note = recovery.inspect_wal(path) if existed else None
        problem: str | None = None
        try:
            record = read_ledger(ledger_path(path))
        except LedgerError as exc:
            record, problem = None, str(exc)
        con, moved = open_database(path, self.config.max_bytes)
        try:
            found = recovery.Found(
                intact=existed and moved is None,
                ledger=record,
                ledger_problem=problem,
                moved=moved,
                moved_info=recovery.inspect_moved(moved) if moved is not None else None,
                wal_note=wal_note,
            )
            outcome = recovery.reconcile(con, found, now=self._clock())
            if self.chain is not None:
                self.chain.on_open(con, epoch=outcome.epoch, lost_messages=outcome.gap is not None)
            ledger = SeqLedger(ledger_path(path), outcome.ledger)
        except BaseException:
            con.close()
            raise
        return con, moved, outcome, ledger

    async def close(self) -> None:
        """Flush queued rows, stop the writer thread and close the database."""
        writer = self._writer
        if writer is None:
            return
        self._acks.flush()
        self._writer = None
        ledger, self._ledger = self._ledger, None

        def stop() -> None:
            writer.stop()
            if ledger is not None:
                ledger.close(writer.last_seq, self._clock())

        await asyncio.to_thread(stop)

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` succeeded and :meth:`close` was not called."""
        return self._writer is not None

    def _w(self) -> Writer:
        if self._writer is None:
            raise RuntimeError("buffer is not open")
        return self._writer

    async def _call(self, fn: Callable[[Any], T]) -> T:
        future: Future[T] = self._w().submit(fn)
        return await asyncio.wrap_future(future)

    # -- ingest (non-blocking) ---------------------------------------------------------
    def add_readings(self, readings: Sequence[Reading]) -> None:
        """Queue readings for a batched commit (when the queue is full the newest are dropped).

        A :class:`~edge_agent.columns.ColumnPoll` is queued whole (its frames are encoded
        from its columns, without a reading per value) and counts as its values.
        """
        if type(readings) is ColumnPoll:
            self._w().put("readings", [readings], weight=len(readings))
        else:
            self._w().put("readings", list(readings))

    def cut(self) -> Cut | None:
        """Queue a telemetry cut after the readings queued so far (None unless raw = blocks).

        See :mod:`.telerefs`: the messages built since the last await carry exactly the
        polls queued before it.
        """
        if self.config.raw is not RawMode.BLOCKS:
            return None
        cut = Cut()
        self._w().put("readings", [cut])
        return cut

    def add_comms(self, event: CommsEvent) -> None:
        """Queue one comms lost/restored event."""
        self._w().put("comms_events", [event])

    def add_intervals(self, machine: str, intervals: Sequence[Mapping[str, Any]]) -> None:
        """Queue machine state intervals (dicts; ``start``/``end`` UNIX seconds are indexed)."""
        self._w().put("intervals", [interval_row(machine, i) for i in intervals])

    def add_samples(self, rows: Sequence[tuple[str, int, float, str]]) -> None:
        """Queue sample-journal rows ``(machine, n, t, data JSON)`` (see :mod:`.journal`)."""
        self._w().put("samples", list(rows))

    async def journal_end(self, machine: str, keep_n: int | None) -> int:
        """Cut ``machine``'s sample journal after ``keep_n`` (None: keep all); its last n."""
        return await self._call(lambda con: journal.cut(con, machine, keep_n))

    async def flush(self) -> None:
        """Wait until every row queued so far is committed (or held in RAM if the disk is full)."""
        await asyncio.wrap_future(self._w().flush_rows())

    # -- outbox --------------------------------------------------------------------------
    async def publish(
        self,
        kind: str,
        topic: str,
        data: Mapping[str, Any],
        *,
        priority: int,
        retain: bool = False,
        record_key: str | None = None,
    ) -> int:
        """Store one message durably in the outbox (committed before return) and return its seq.

        Args:
            kind: Message kind (``kpi``, ``stop``, ``health``, ``telemetry`` ...).
            topic: Full MQTT topic (see :class:`edge_agent.uplink.TopicTemplates`).
            data: The ``data`` part of the envelope (JSON-serialisable, no NaN).
            priority: :class:`Priority` value (smaller is more important); ``HIGH`` rows
                and every ``kpi``/``stop`` row are never evicted.
            retain: Publish with the retain flag.
            record_key: For ``kpi``/``stop``: the record identity (machine+window+revision);
                a later message with the same key replaces the stored record.

        Raises:
            StorageFull: The row cannot be stored (disk full, or budget full of
                never-evicted rows). The caller keeps the data and retries.
            ValueError: ``data`` contains NaN or Infinity.
            TypeError: ``data`` is not JSON-serialisable.
        """
        seqs = await self.publish_many(
            [
                Outgoing(
                    kind=kind,
                    topic=topic,
                    data=data,
                    priority=priority,
                    retain=retain,
                    record_key=record_key,
                )
            ]
        )
        return seqs[0]

    async def publish_many(
        self,
        messages: Sequence[Outgoing],
        *,
        states: Mapping[str, Mapping[str, Any]] | None = None,
        intervals: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> list[int]:
        """Store several messages in one durable commit (one fsync); returns their seqs in order.

        Same guarantees and errors as :meth:`publish`; either all are stored or none.
        ``states`` (key -> blob, as :meth:`save_state`) and ``intervals`` (machine,
        interval, as :meth:`add_intervals`) are written in the same transaction: what
        was derived from a calculator's state is committed with that state, so a crash
        can neither lose it nor have it derived again (issue 22).
        """
        writer = self._w()
        created = self._clock()
        blobs = [(key, dumps(value)) for key, value in (states or {}).items()]
        interval_rows = [interval_row(machine, iv) for machine, iv in intervals]
        rows = [
            NewMessage(
                kind=m.kind,
                priority=int(m.priority),
                topic=m.topic,
                data=dumps(m.data),
                created=created,
                retain=m.retain,
                record_key=m.record_key,
                frames=m.frames,
            )
            for m in messages
        ]
        if not rows and not blobs and not interval_rows:
            return []

        chain = self.chain
        refs = any(m.frames is not None for m in messages)
        texts = writer.texts
        # Raw telemetry rounds also delete the telemetry rows acknowledged meanwhile:
        # one commit a second instead of two (edge_agent.buffer.acks).
        acked = self._acks.take() if refs else []
        deleted = 0

        def insert(con: Any) -> list[int]:
            nonlocal deleted
            con.execute("BEGIN IMMEDIATE")
            settle = None
            try:
                # The frames a reference points at commit with it (one commit, not two).
                settle = writer.rows_in(con) if refs else None
                deleted = outbox.delete_acked(con, acked, created) if acked else 0
                seqs = outbox.insert_rows(con, rows, chain=chain, texts=texts) if rows else []
                con.executemany(INSERT["intervals"], interval_rows)
                con.executemany(_UPSERT_STATE, [(k, text, created) for k, text in blobs])
                con.execute("COMMIT")
            except BaseException as exc:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                if settle is not None:
                    settle(exc)
                raise
            if settle is not None:
                settle(None)
            if interval_rows:
                writer.written["intervals"] += len(interval_rows)
            if acked:
                writer.outbox_count -= deleted
                texts.drop(acked)
            return seqs

        try:
            seqs = await self._call(writer.durable(self._numbered(insert, len(rows))))
        except BaseException:
            self._acks.settle(acked, deleted=False)
            raise
        self._acks.settle(acked, deleted=True)
        if not seqs:
            return seqs
        for listener in list(self._listeners):
            listener()
        return seqs

    def _numbered(
        self, insert: Callable[[Any], list[int]], count: int
    ) -> Callable[[Any], list[int]]:
        """Wrap an outbox insert (writer thread): reserve its seqs in the ledger first.

        The reservation is durable before the commit that could hand the numbers out;
        the committed high-water mark is recorded after it.
        """
        writer = self._w()
        ledger = self._ledger
        chain = self.chain
        if chain is not None:
            count += CHAIN_PRELUDE_MAX

        def job(con: Any) -> list[int]:
            if ledger is not None:
                try:
                    ledger.reserve(writer.last_seq + count)
                except OSError as exc:
                    raise StorageFull(f"cannot reserve sequence numbers: {exc}") from exc
            seqs = insert(con)
            every = [*seqs, *chain.added] if chain is not None else seqs
            if every:
                writer.outbox_count += len(every)
                writer.last_seq = max(writer.last_seq, *every)
                if ledger is not None:
                    ledger.committed(writer.last_seq, self._clock())
            return seqs

        return job

    async def publish_gaps(self, topic: str) -> list[int]:
        """Move pending gap reports (see :mod:`.recovery`) into the outbox; returns their seqs.

        One transaction: the ``gap`` messages are stored and the pending reports
        deleted together, so a crash in between neither loses nor repeats a report.

        Raises:
            StorageFull: The messages cannot be stored now (retry later).
        """
        writer = self._w()
        created = self._clock()

        def insert(con: Any) -> list[int]:
            con.execute("BEGIN IMMEDIATE")
            try:
                row = con.execute(
                    "SELECT value FROM state WHERE key = ?", (recovery.GAPS_KEY,)
                ).fetchone()
                reports = json.loads(row[0]) if row else []
                messages = [
                    NewMessage(
                        kind="gap",
                        priority=int(Priority.HIGH),
                        topic=topic,
                        data=dumps(report),
                        created=created,
                    )
                    for report in reports
                ]
                seqs = outbox.insert_rows(con, messages, chain=self.chain)
                con.execute("DELETE FROM state WHERE key = ?", (recovery.GAPS_KEY,))
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            return seqs

        seqs = await self._call(writer.durable(self._numbered(insert, recovery.GAPS_MAX)))
        if seqs:
            for listener in list(self._listeners):
                listener()
        return seqs

    def on_publish(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` on the loop after each committed publish; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def fetch_outbox_lanes(
        self, queries: Sequence[outbox.LaneQuery], *, discover: bool
    ) -> tuple[list[int] | None, list[list[OutboxRow]]]:
        """Several priority-class reads (and optionally the classes present) in one writer job."""
        texts = self._w().texts
        found, lanes = await self._call(
            lambda con: outbox.fetch_lanes(con, list(queries), discover=discover, texts=texts)
        )
        lanes = [self._acks.visible(rows) for rows in lanes]
        self._acks.seen(lanes)
        return found, lanes

    async def fetch_outbox(
        self, *, after: int, limit: int, max_seq: int | None = None
    ) -> list[OutboxRow]:
        """Outbox rows with ``seq > after`` (and ``<= max_seq``) in seq order, at most ``limit``."""
        texts = self._w().texts
        rows = await self._call(
            lambda con: outbox.fetch(con, after=after, limit=limit, max_seq=max_seq, texts=texts)
        )
        rows = self._acks.visible(rows)
        self._acks.seen([rows])
        return rows

    async def ack(self, seqs: Sequence[int]) -> int:
        """Delete acknowledged rows (marking their records published); returns rows deleted.

        Pending :meth:`ack_later` seqs are deleted first (their own job).
        """
        writer = self._w()
        self._acks.flush()
        items = list(seqs)
        now = self._clock()

        def job(con: Any) -> int:
            deleted = outbox.ack(con, items, now, writer.texts)
            writer.outbox_count -= deleted
            return deleted

        return await self._call(job)

    def ack_later(self, seqs: Sequence[int]) -> None:
        """Like :meth:`ack` without waiting; telemetry deletes are batched.

        For the uplink's hot path. Fetched telemetry rows are deleted together within
        a second (:mod:`.acks`); a fetch meanwhile never returns them and
        :attr:`backlog` no longer counts them. Other rows (records, health,
        evidence) are deleted by a job submitted now, which runs before any job
        submitted later (FIFO). A crash before a delete re-sends the row at the next
        start (at-least-once); a failure is logged (the rows stay and are re-sent).
        """
        self._w()  # raises when closed
        self._acks.later(seqs)

    @property
    def last_seq(self) -> int:
        """The highest seq ever allocated (0 when none)."""
        return self._w().last_seq

    @property
    def backlog(self) -> int:
        """Rows in the outbox not yet acknowledged (a batched delete may still be pending)."""
        # A row evicted while its delete waited is in both counts for up to a second.
        return max(0, self._w().outbox_count - self._acks.pending)

    # -- calculator state ----------------------------------------------------------------
    async def save_state(self, key: str, value: Mapping[str, Any]) -> None:
        """Store a JSON blob under ``key`` (durable commit)."""
        writer = self._w()
        text = dumps(value)
        now = self._clock()
        # Rows queued before (the sample journal a calculator state counts) commit first.
        writer.flush_rows()

        def job(con: Any) -> None:
            con.execute(_UPSERT_STATE, (key, text, now))

        await self._call(writer.durable(job))

    async def load_state(self, key: str) -> dict[str, Any] | None:
        """The blob stored under ``key``, or None."""

        def job(con: Any) -> str | None:
            row = con.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        text = await self._call(job)
        if text is None:
            return None
        value = json.loads(text)
        return value if isinstance(value, dict) else None

    # -- health ----------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Sizes, backlog, drop counts per table/kind, disk-full flag and last error.

        Keys: ``db_bytes``, ``wal_bytes``, ``max_bytes``, ``page_cap``, ``free_pages``,
        ``queued_rows``, ``held_rows``, ``backlog``, ``last_seq``, ``written`` (rows per
        table), ``dropped`` (``readings`` = evicted under budget, ``outbox:<kind>``,
        ``readings:queue_full``, ``readings:memory_full`` ...), ``expired`` (rows aged out
        by retention), ``disk_full``, ``full_reason`` (``budget``/``disk``/``""``),
        ``outbox_full`` (why the last outbox insert was refused: ``budget``/``disk``/``""``),
        ``last_error``, ``moved_aside`` (path of a corrupt file replaced at open),
        ``epoch`` (the seq numbering epoch) and ``recovered`` (the gap report of
        messages lost with the database at open, or None), ``telemetry_refs``
        (telemetry rows stored as references to frames: ``stored``, ``rebuilt`` from
        frames, ``lost`` because their frames were gone, ``cached`` texts held).
        """
        w = self._w()
        usage = w.usage
        size = plan_size(self.config.max_bytes)
        return {
            "db_bytes": usage.page_count * 4096,
            "wal_bytes": w.wal_bytes(),
            "max_bytes": self.config.max_bytes,
            "page_cap": size.max_page_count,
            "free_pages": usage.free_pages,
            "queued_rows": w.queued,
            "held_rows": w.held,
            "backlog": w.outbox_count,
            "last_seq": w.last_seq,
            "written": dict(w.written),
            "dropped": dict(w.dropped),
            "expired": dict(w.expired),
            "disk_full": w.disk_full,
            "full_reason": w.full_reason,
            "outbox_full": w.outbox_full,
            "last_error": w.last_error,
            "moved_aside": str(self.moved_aside) if self.moved_aside else None,
            "epoch": self.epoch,
            "recovered": self.recovered,
            "telemetry_refs": w.texts.figures(),
        }

    async def run_maintenance(self) -> None:
        """Run retention and size checks now (they also run every second on their own)."""

        def job(_con: Any) -> None:
            self._w().maintain(force=True)

        await self._call(job)


__all__ = ["Buffer", "Outgoing", "Priority", "dumps"]
