"""The sample journal table: what each machine's calculator was fed, in order.

Rows ``(machine, n, ts, data)``: ``n`` counts the samples fed to the machine's
calculator (1, 2, ...; saved with the calculator state as ``journal_n``), ``ts``
is the sample time (UNIX seconds, indexed for time ranges), ``data`` the
``edge-agent replay`` input object as JSON text. Rows are queued through the
writer like readings (:meth:`~edge_agent.buffer.store.Buffer.add_samples`);
:func:`cut` runs on the writer thread, :func:`read` on any (read-only)
connection. Aged out with the state intervals (``events_retention_h``; cut in
arrival order, like readings) and evicted under the size budget right after raw
readings. No threads, no state.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator


def cut(con: sqlite3.Connection, machine: str, keep_n: int | None) -> int:
    """Delete ``machine``'s rows after ``keep_n`` (None: none); returns the last ``n`` kept.

    A restart restores the calculator from its last saved state: samples journaled
    after that state was saved were lost with the process, so they leave the journal
    too (the journal says exactly what the restored calculator holds).
    """
    if keep_n is not None:
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM samples WHERE machine = ? AND n > ?", (machine, keep_n))
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
    row = con.execute("SELECT max(n) FROM samples WHERE machine = ?", (machine,)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def machines(con: sqlite3.Connection) -> list[str]:
    """Machines with journaled samples."""
    return [str(r[0]) for r in con.execute("SELECT DISTINCT machine FROM samples ORDER BY 1")]


def first_t(con: sqlite3.Connection, machine: str) -> float | None:
    """Time of ``machine``'s oldest journaled sample still kept, or None."""
    row = con.execute("SELECT min(ts) FROM samples WHERE machine = ?", (machine,)).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def read(
    con: sqlite3.Connection, machine: str, start: float, end: float
) -> Iterator[tuple[float, str]]:
    """``(ts, data)`` of ``machine``'s samples with ``start <= ts < end``, in the order fed."""
    cur = con.execute(
        "SELECT ts, data FROM samples WHERE machine = ? AND ts >= ? AND ts < ? ORDER BY n",
        (machine, start, end),
    )
    for t, data in cur:
        yield float(t), str(data)
