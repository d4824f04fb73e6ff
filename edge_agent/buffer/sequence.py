"""The sequence ledger: a small file beside the buffer database that keeps ``seq`` unique.

The outbox numbers messages with SQLite's AUTOINCREMENT counter, which lives in
the database file. When that file is lost (moved aside as corrupt, deleted) or
silently rolled back (SQLite discards a write-ahead log that is not valid without
any error, and with it every commit it held), the counter goes back and numbers
already published would be handed out again: a consumer de-duplicating on
``(agent, epoch, seq)`` would then drop new data as duplicates.

The ledger ``<database>.seq`` holds one JSON object of fixed width:

* ``epoch``: the numbering epoch (8 hex digits). It changes only when numbering
  has to restart because the database and this file were both lost;
* ``reserved``: no seq above it was ever handed out. It is raised in blocks of
  :data:`RESERVE_BLOCK` *before* the commit that would pass it, written to a
  temporary file that is fsynced and renamed (durable across a power cut);
* ``high_water``: the highest seq committed, rewritten in place after every
  outbox commit without fsync (one ``pwrite``: exact after a crash or ``kill -9``
  of the agent, possibly older after a power cut, never above ``reserved``);
* ``updated``: wall-clock time of that commit.

What it does not do: decide what a difference between the ledger and the database
means (:mod:`.recovery` does) or touch the database. Guarantees: ``reserved`` is
on disk before any seq above the previous reservation is committed; a record that
cannot be parsed is reported as unreadable, never guessed. One writer only: the
buffer's writer thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

LEDGER_FORMAT = 1
# Seqs reserved ahead per durable ledger write: one fsynced rename per 1,000 messages.
RESERVE_BLOCK = 1000
RECORD_BYTES = 192
EPOCH_RE = re.compile(r"^[0-9a-f]{8}$")


class LedgerError(Exception):
    """The ledger file exists but cannot be read or parsed."""


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """The ledger's content (see the module docstring for each field)."""

    epoch: str
    high_water: int
    reserved: int
    updated: float


def new_epoch() -> str:
    """A fresh numbering epoch: 8 random hex digits."""
    return secrets.token_hex(4)


def ledger_path(database: Path) -> Path:
    """Where the ledger of ``database`` lives (``buffer.db`` -> ``buffer.db.seq``)."""
    return database.with_name(database.name + ".seq")


def encode(record: LedgerRecord) -> bytes:
    """The fixed-width text of a record (padded with spaces, newline-terminated)."""
    text = json.dumps(
        {
            "format": LEDGER_FORMAT,
            "epoch": record.epoch,
            "high_water": record.high_water,
            "reserved": record.reserved,
            "updated": round(record.updated, 3),
        },
        separators=(",", ":"),
    ).encode()
    if len(text) >= RECORD_BYTES:
        raise ValueError(f"ledger record too long: {len(text)} bytes")
    return text.ljust(RECORD_BYTES - 1) + b"\n"


def decode(raw: bytes) -> LedgerRecord:
    """Parse a record.

    Raises:
        LedgerError: Not a ledger record of this format (the reason says why).
    """
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LedgerError(f"not a ledger record: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != LEDGER_FORMAT:
        raise LedgerError("not a ledger record of format 1")
    epoch, high, reserved, updated = (
        doc.get("epoch"),
        doc.get("high_water"),
        doc.get("reserved"),
        doc.get("updated"),
    )
    if not isinstance(epoch, str) or not EPOCH_RE.match(epoch):
        raise LedgerError(f"invalid epoch {epoch!r}")
    high = _count(high, "high_water")
    reserved = _count(reserved, "reserved")
    if high > reserved:
        raise LedgerError(f"high_water {high} above reserved {reserved}")
    if isinstance(updated, bool) or not isinstance(updated, int | float):
        raise LedgerError(f"invalid updated {updated!r}")
    if not math.isfinite(float(updated)):
        raise LedgerError(f"invalid updated {updated!r}")
    return LedgerRecord(epoch=epoch, high_water=high, reserved=reserved, updated=float(updated))


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LedgerError(f"invalid {name} {value!r}")
    return value


def read_ledger(path: Path) -> LedgerRecord | None:
    """The record in ``path``, or None when the file does not exist.

    Raises:
        LedgerError: The file exists but cannot be read or parsed.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read(RECORD_BYTES * 4)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LedgerError(f"cannot read {path}: {exc.strerror or exc}") from None
    return decode(raw)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SeqLedger:
    """Keeps the ledger file of one open buffer up to date (writer thread only).

    Args:
        path: The ledger file.
        record: The state to start from; written durably at construction.

    Raises:
        OSError: The file cannot be written.
    """

    def __init__(self, path: Path, record: LedgerRecord) -> None:
        self.path = path
        self._record = record
        self._fd: int | None = None
        self._warned = False
        self._write_durable(record)

    @property
    def record(self) -> LedgerRecord:
        """What the file says now."""
        return self._record

    def reserve(self, last_seq: int) -> None:
        """Make sure ``reserved >= last_seq`` is on disk before a commit hands it out.

        Raises:
            OSError: The reservation could not be written durably (the caller must not
                commit seqs above the old reservation).
        """
        if last_seq <= self._record.reserved:
            return
        self._write_durable(replace(self._record, reserved=last_seq + RESERVE_BLOCK))

    def committed(self, high_water: int, now: float) -> None:
        """Record the highest committed seq (in place, no fsync; never raises)."""
        if high_water <= self._record.high_water:
            return
        record = replace(
            self._record, high_water=high_water, reserved=max(self._record.reserved, high_water)
        )
        try:
            os.pwrite(self._require_fd(), encode(replace(record, updated=now)), 0)
        except OSError as exc:
            if not self._warned:
                log.warning(
                    "Could not update the sequence ledger (the reservation still holds): "
                    "path=%s error=%r",
                    self.path,
                    exc,
                )
                self._warned = True
            return
        self._record = replace(record, updated=now)

    def close(self, high_water: int, now: float) -> None:
        """Write the exact state durably (``reserved = high_water``: nothing is reserved)."""
        record = replace(
            self._record,
            high_water=max(high_water, self._record.high_water),
            reserved=max(high_water, self._record.high_water),
            updated=now if high_water > self._record.high_water else self._record.updated,
        )
        try:
            self._write_durable(record)
        except OSError as exc:
            log.warning(
                "Could not write the sequence ledger at close: path=%s error=%r", self.path, exc
            )
        finally:
            self._close_fd()

    def _require_fd(self) -> int:
        if self._fd is None:
            raise OSError("the sequence ledger is closed")
        return self._fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):  # only a descriptor we opened; nothing to lose
                os.close(self._fd)
            self._fd = None

    def _write_durable(self, record: LedgerRecord) -> None:
        """Temporary file, fsync, rename, fsync of the directory; then reopen for pwrite."""
        data = encode(record)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._close_fd()
        self._fd = os.open(self.path, os.O_RDWR)
        self._record = record
