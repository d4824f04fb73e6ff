"""Linking and signing records inside the outbox transaction (buffer writer thread).

:class:`Chain` is handed to the buffer (:class:`edge_agent.buffer.Buffer`); the
outbox calls :meth:`Chain.begin` at the start of every insert transaction and
:meth:`Batch.link` for each row right after SQLite assigned its ``seq``. So the
link (``prev``), the signature and the new chain head are written in the same
transaction as the row: a crash or ``kill -9`` keeps all of them or none, and
the chain is ordered by ``seq`` by construction.

State, all in the database (read at the start of each transaction, never cached,
so a rolled-back transaction cannot leave memory ahead of the file):

* ``state['evidence:head']``: ``{epoch, seq, hash, kid}`` of the last chained
  record, and the kid that signs the next one;
* table ``evidence``: every chained record as published (the envelope's exact
  text), kept for bundles after the outbox row is acknowledged and deleted.

Segments: the chain starts a new segment (``prev: null``) only with a record that
says why. At open (:meth:`Chain.on_open`) the head is dropped when the buffer
found lost messages (recovery gap), when the epoch changed, or when the key that
signed the head is gone. The next transaction then begins with the segment start:
the pending ``gap`` reports (moved from the ``state`` table into the outbox here,
the first one with ``prev: null``), or else a ``key`` record ``chain_start``.
A key rotation prepared by ``edge-agent key rotate`` is committed the same way:
a ``key`` record ``rotated`` signed by the old key, after which the new key signs.

Not here: which kinds are chained (:func:`edge_agent.evidence.proof.policy`), what
a verifier concludes (:mod:`edge_agent.evidence.verify`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge_agent import __version__
from edge_agent.buffer.outbox import NewMessage, OutboxRow, Priority
from edge_agent.buffer.recovery import GAPS_KEY
from edge_agent.evidence import proof
from edge_agent.evidence.canonical import canonical, digest
from edge_agent.evidence.keys import KeyStore, SigningKey
from edge_agent.evidence.proof import key_info, possession_message
from edge_agent.uplink.payload import envelope, iso_utc

log = logging.getLogger(__name__)

HEAD_KEY = "evidence:head"
#: Rows a transaction may add before the caller's (segment start, gaps, rotation).
MAX_PRELUDE = 102


@dataclass(frozen=True, slots=True)
class Head:
    """The last chained record and the key that signs the next one."""

    epoch: str
    seq: int
    hash: str
    kid: str


def read_head(con: sqlite3.Connection) -> Head | None:
    """The chain head stored in the database (None: no chain, or it was dropped)."""
    row = con.execute("SELECT value FROM state WHERE key = ?", (HEAD_KEY,)).fetchone()
    if row is None:
        return None
    try:
        doc = json.loads(row[0])
        return Head(str(doc["epoch"]), int(doc["seq"]), str(doc["hash"]), str(doc["kid"]))
    except (ValueError, KeyError, TypeError):
        return None


def _write_head(con: sqlite3.Connection, head: Head, now: float) -> None:
    value = json.dumps(
        {"epoch": head.epoch, "seq": head.seq, "hash": head.hash, "kid": head.kid},
        separators=(",", ":"),
    )
    con.execute(
        "INSERT INTO state(key, value, updated) VALUES (?, ?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
        (HEAD_KEY, value, now),
    )


class Chain:
    """The agent's hash chain (one per agent), driven by the outbox on the writer thread.

    Args:
        keys: The device's key store (the active key is created at :meth:`on_open`).
        agent: The agent id (part of every signed header).
        topics: Topics for the records the chain writes itself: ``gap`` and ``key``.
        clock: Wall clock for the records it writes itself.
    """

    def __init__(
        self,
        keys: KeyStore,
        agent: str,
        *,
        topics: Mapping[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.agent = agent
        self.topics = dict(topics)
        self.epoch = ""
        self.start_reason = "first_start"
        #: Seqs of the rows the last transaction added before the caller's (writer thread).
        self.added: list[int] = []
        self._clock = clock

    # -- open ----------------------------------------------------------------------------
    def on_open(self, con: sqlite3.Connection, *, epoch: str, lost_messages: bool) -> None:
        """At buffer open (writer connection, before the writer starts): check the head.

        Creates the device key at first start. Drops the head, so the next
        transaction starts a segment, when messages were lost (``lost_messages``:
        the recovery found a gap), the epoch changed, or the head's key is gone.
        """
        self.epoch = epoch
        _key, created = self.keys.ensure()
        if created:
            log.info("Device key created kid=%s path=%s", _key.kid, self.keys.active_path)
        head = read_head(con)
        reason: str | None = None
        if head is None:
            has_history = con.execute(
                "SELECT 1 FROM sqlite_sequence WHERE name = 'outbox' AND seq > 0"
            ).fetchone()
            self.start_reason = "chain_enabled" if has_history else "first_start"
            return
        if lost_messages:
            reason = "messages_lost"
        elif head.epoch != epoch:
            reason = "epoch_changed"
        elif self.keys.signer(head.kid) is None:
            reason = "key_replaced"
        if reason is None:
            return
        self.start_reason = reason
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM state WHERE key = ?", (HEAD_KEY,))
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        log.warning(
            "Evidence chain starts a new segment reason=%s previous_seq=%d", reason, head.seq
        )

    # -- transactions ------------------------------------------------------------------------
    def begin(self, con: sqlite3.Connection) -> Batch:
        """Start linking one outbox transaction (inside it): reads the head, plans the prelude."""
        created = self._clock()
        self.added = []
        head = read_head(con)
        pending = self.keys.pending()
        if head is not None and pending is not None and head.kid == pending.kid:
            # The rotation record is committed: the new key becomes the device key.
            self.keys.promote(pending.kid)
            log.info("Device key rotated kid=%s", pending.kid)
            pending = None
        batch = Batch(self, con, head, created)
        if head is None:
            batch.prelude.extend(self._segment_start(con, created))
        if pending is not None:
            batch.prelude.append(self._rotation(batch, pending, created))
        return batch

    def _segment_start(self, con: sqlite3.Connection, created: float) -> list[NewMessage]:
        row = con.execute("SELECT value FROM state WHERE key = ?", (GAPS_KEY,)).fetchone()
        reports = json.loads(row[0]) if row else []
        if reports:
            con.execute("DELETE FROM state WHERE key = ?", (GAPS_KEY,))
            return [
                NewMessage(
                    kind="gap",
                    priority=int(Priority.HIGH),
                    topic=self.topics["gap"],
                    data=json.dumps(report, separators=(",", ":")),
                    created=created,
                )
                for report in reports
            ]
        active = self.keys.active()
        if active is None:  # pragma: no cover - on_open created it
            raise RuntimeError("no device key")
        data = {
            "event": "chain_start",
            "reason": self.start_reason,
            "key": key_info(active.public),
            "agent_version": __version__,
        }
        return [self._key_message(data, created)]

    def _rotation(self, batch: Batch, new: SigningKey, created: float) -> NewMessage:
        old_kid = batch.head.kid if batch.head is not None else self._active_kid()
        old = self.keys.signer(old_kid)
        old_info = key_info(old.public) if old is not None else {"kid": old_kid}
        data = {
            "event": "rotated",
            "old_key": old_info,
            "key": key_info(new.public),
            "possession": proof.encode_sig(
                new.sign(possession_message(self.agent, old_kid, new.kid))
            ),
            "agent_version": __version__,
        }
        batch.rotate_to = new.kid
        return self._key_message(data, created)

    def _key_message(self, data: Mapping[str, Any], created: float) -> NewMessage:
        return NewMessage(
            kind="key",
            priority=int(Priority.HIGH),
            topic=self.topics["key"],
            data=json.dumps(data, separators=(",", ":")),
            created=created,
        )

    def _active_kid(self) -> str:
        active = self.keys.active()
        if active is None:  # pragma: no cover - on_open created it
            raise RuntimeError("no device key")
        return active.kid


class Batch:
    """One transaction's linking state (see :meth:`Chain.begin`)."""

    def __init__(
        self, chain: Chain, con: sqlite3.Connection, head: Head | None, created: float
    ) -> None:
        self.chain = chain
        self.con = con
        self.head = head
        self.created = created
        self.prelude: list[NewMessage] = []
        self.rotate_to: str | None = None
        self._kid = head.kid if head is not None else chain._active_kid()
        self._changed = False

    def link(self, seq: int, message: NewMessage) -> str | None:
        """Sign (and chain) one inserted row; returns its proof JSON text or None.

        Chained records are also written to the ``evidence`` table.
        """
        if any(message is p for p in self.prelude):
            self.chain.added.append(seq)
        data = json.loads(message.data)
        how = proof.policy(message.kind, data if isinstance(data, dict) else {})
        if how is None:
            return None
        signer = self.chain.keys.signer(self._kid)
        if signer is None:
            raise RuntimeError(f"the private key {self._kid} is not in {self.chain.keys.directory}")
        prev: str | proof._Unchained | None = proof.UNCHAINED
        if how == "chain":
            prev = self.head.hash if self.head is not None else None
        head = proof.header(
            agent=self.chain.agent,
            epoch=self.chain.epoch,
            seq=seq,
            kind=message.kind,
            ts=iso_utc(message.created),
            data_sha256=digest(data),
            kid=signer.kid,
            prev=prev,
        )
        raw = canonical(head)
        text = proof.proof_json(signer.kid, prev, proof.encode_sig(signer.sign(raw)))
        if how == "chain":
            machine = data.get("machine") if isinstance(data, dict) else None
            row = OutboxRow(
                seq,
                message.kind,
                message.priority,
                message.topic,
                message.data,
                message.created,
                message.retain,
                text,
            )
            self.con.execute(
                "INSERT INTO evidence(seq, epoch, kind, created, machine, envelope) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    self.chain.epoch,
                    message.kind,
                    message.created,
                    machine if isinstance(machine, str) else None,
                    envelope(row, self.chain.agent, self.chain.epoch).decode("utf-8"),
                ),
            )
            if (
                message.kind == "key"
                and self.rotate_to is not None
                and data.get("event") == "rotated"
            ):
                self._kid = self.rotate_to  # records after the rotation are signed by the new key
            self.head = Head(self.chain.epoch, seq, proof.link_hash(raw), self._kid)
            self._changed = True
        return text

    def finish(self) -> None:
        """Store the new head (same transaction)."""
        if self._changed and self.head is not None:
            _write_head(self.con, self.head, self.created)
