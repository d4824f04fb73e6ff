"""Batched deletes of acknowledged telemetry rows (the uplink's ``ack_later`` path).

Every PUBACK burst used to delete its rows in a commit of its own (about ten commits a
second at 100 devices x 125 registers); each commit writes whole 4 KiB pages to the
WAL. :class:`AckBatcher` deletes the rows of :data:`LAZY_ACK_KINDS` (raw telemetry)
that a fetch returned together: in the next telemetry round's commit (:meth:`take`,
about once a second), else once :data:`ACK_DELAY_S` passed or :data:`ACK_BATCH`
seqs wait (or when the owner flushes: a later awaited ack, the close); other rows are
deleted by a job submitted at once, as before (FIFO with every later job).

Guarantees: a row is deleted only after its acknowledgement (never earlier); while its
delete waits, :meth:`AckBatcher.visible` hides it from fetches and :attr:`pending`
counts it, so the backlog and the uplink see it as gone; a crash before the delete
re-sends it at the next start (at-least-once, as before). Runs on the event loop
(the delete itself runs on the writer thread); no I/O of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from edge_agent.buffer import outbox
from edge_agent.buffer.outbox import OutboxRow
from edge_agent.buffer.writer import Writer

log = logging.getLogger(__name__)

ACK_DELAY_S = 2.0
ACK_BATCH = 1000
LAZY_ACK_KINDS = frozenset({"telemetry"})
# Fetched rows never acknowledged (evicted, re-sent under another seq) are forgotten
# beyond this many.
LAZY_MAX = 100_000


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class AckBatcher:
    """Acknowledged seqs waiting for one batched delete.

    Args:
        writer: The open writer (None once the buffer is closed).
        clock: Wall clock for the records' ``published`` time.
    """

    def __init__(self, writer: Callable[[], Writer | None], clock: Callable[[], float]) -> None:
        self._writer = writer
        self._clock = clock
        self._acks: list[int] = []  # in acknowledgement order
        self._acked: set[int] = set()  # the same seqs, until their delete ran
        self._lazy: set[int] = set()  # fetched rows of LAZY_ACK_KINDS
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> int:
        """Acknowledged rows whose delete has not run yet."""
        return len(self._acked)

    def seen(self, lanes: Sequence[Sequence[OutboxRow]]) -> None:
        """Remember fetched rows whose acknowledgement may be batched (bounded)."""
        lazy = self._lazy
        if len(lazy) > LAZY_MAX:
            lazy.clear()
        for rows in lanes:
            lazy.update(r.seq for r in rows if r.kind in LAZY_ACK_KINDS)

    def visible(self, rows: list[OutboxRow]) -> list[OutboxRow]:
        """The rows whose acknowledgement is not pending."""
        acked = self._acked
        return [r for r in rows if r.seq not in acked] if acked else rows

    def later(self, seqs: Sequence[int]) -> None:
        """Delete ``seqs``: telemetry rows in the next batch, the others now."""
        lazy = self._lazy
        now_items = [s for s in seqs if s not in lazy]
        if now_items:
            self.flush(now_items)
        batched = [s for s in seqs if s in lazy]
        if not batched:
            return
        lazy.difference_update(batched)
        self._acks.extend(batched)
        self._acked.update(batched)
        if len(self._acks) >= ACK_BATCH:
            self.flush()
        elif self._timer is None:
            loop = _running_loop()
            if loop is None:
                self.flush()
            else:
                self._timer = loop.call_later(ACK_DELAY_S, self.flush)

    def take(self) -> list[int]:
        """The pending batch, for a caller deleting it in its own transaction.

        They stay hidden from fetches until :meth:`settle`; the caller deletes them
        with :func:`~edge_agent.buffer.outbox.delete_acked` and settles on the loop.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, self._acks = self._acks, []
        return items

    def settle(self, items: list[int], *, deleted: bool) -> None:
        """A taken batch's transaction ended; when it did not commit they wait again."""
        if deleted:
            self._acked.difference_update(items)
        elif items:
            self._acks[:0] = items
            if self._timer is None:
                loop = _running_loop()
                if loop is not None:
                    self._timer = loop.call_later(ACK_DELAY_S, self.flush)

    def flush(self, items: list[int] | None = None) -> None:
        """Submit ``items``, or the pending batch, as one writer job (not awaited)."""
        if items is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            items, self._acks = self._acks, []
        writer = self._writer()
        if not items or writer is None:
            return
        now = self._clock()
        acked = self._acked
        batch = items

        def job(con: Any) -> int:
            deleted = outbox.ack(con, batch, now, writer.texts)
            writer.outbox_count -= deleted
            return deleted

        def done(future: Future[int]) -> None:
            acked.difference_update(batch)
            if not future.cancelled() and (exc := future.exception()) is not None:
                log.error(
                    "Buffer could not delete acknowledged rows: rows=%d error=%r", len(batch), exc
                )

        future = writer.submit(job)
        loop = _running_loop()
        if loop is None:
            future.add_done_callback(done)
        else:
            # The set of pending seqs belongs to the loop: updated there.
            future.add_done_callback(lambda f: loop.call_soon_threadsafe(done, f))
