"""The Edge Node's birth/death sequence number (``bdSeq``), persisted across restarts.

Sparkplug 3.0: the NDEATH registered as the MQTT Will of a CONNECT carries a
``bdSeq`` in 0..255; the NBIRTH of that session carries the same value, and the
next CONNECT uses the next one (255 wraps to 0). A host application pairs an
NDEATH with its NBIRTH by this number, so a value must never be reused for two
sessions that a host could confuse - including across an agent restart.

Rules kept here:

* The value for a CONNECT is **written to disk before** the CONNECT is sent
  (atomic replace plus fsync of a small JSON file next to the buffer database),
  so a crash after the CONNECT cannot make the next start reuse it.
* A connection attempt that never reached the broker (refused, TLS failure) sent
  no CONNECT: its value is used again by the next attempt, so a long outage does
  not write the file at every retry (SD card wear). :meth:`BdSeq.accepted` marks
  the value of an accepted connection as spent.
* On start, the next value is the stored one plus one (the stored one may have
  been used by a CONNECT the previous process sent just before it died).

:meth:`BdSeq.for_connect` runs on the MQTT network thread, :meth:`BdSeq.accepted`
and :attr:`BdSeq.current` on the event loop; a lock keeps them consistent. A file
that cannot be read starts from 0 (logged); one that cannot be written is logged
once and the session goes on (a host may then see a repeated bdSeq after a crash).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

MODULO = 256


class BdSeq:
    """The bdSeq counter of one Edge Node, stored in ``path``.

    Args:
        path: The JSON file holding the last bdSeq given to a CONNECT.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        stored = self._load()
        self._stored: int | None = stored
        self._next = 0 if stored is None else (stored + 1) % MODULO
        self._current: int | None = None
        self._write_failed = False

    def _load(self) -> int | None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning(
                "Sparkplug bdSeq file unreadable, starting at 0: path=%s error=%s", self.path, exc
            )
            return None
        value = raw.get("bdseq") if isinstance(raw, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MODULO:
            return value
        log.warning("Sparkplug bdSeq file holds no valid value, starting at 0: path=%s", self.path)
        return None

    def _store(self, value: int) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(json.dumps({"bdseq": value}))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            self._stored = value
            if self._write_failed:
                log.info("Sparkplug bdSeq file writable again: path=%s", self.path)
                self._write_failed = False
        except OSError as exc:
            if not self._write_failed:
                log.error("Cannot persist the Sparkplug bdSeq: path=%s error=%s", self.path, exc)
            self._write_failed = True

    def for_connect(self) -> int:
        """The bdSeq of the next CONNECT (its Will), stored before it is returned."""
        with self._lock:
            value = self._next
            if self._stored != value:
                self._store(value)
            self._current = value
            return value

    def accepted(self) -> None:
        """The broker accepted the CONNECT carrying :attr:`current`: the next one moves on."""
        with self._lock:
            if self._current is not None:
                self._next = (self._current + 1) % MODULO

    @property
    def current(self) -> int | None:
        """The bdSeq of the latest CONNECT (None before the first one)."""
        with self._lock:
            return self._current
