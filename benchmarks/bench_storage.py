"""Storage write cost: bytes written to disk per reading for commit size and WAL checkpoint cadence.

What it measures (issue 20): the real buffer schema and pragmas
(:func:`edge_agent.buffer.schema.open_database`: WAL, ``synchronous=NORMAL``, the
budget's ``wal_autocheckpoint``) in a fresh file under a temporary directory; the
real readings insert (:class:`edge_agent.buffer.rows.SeriesIds`) of the gateway load
(100 devices x 125 registers, one block time per device and second), committed every
``rows`` readings, for 60 simulated seconds (750,000 readings), then a final
``wal_checkpoint(TRUNCATE)`` so every variant pays for getting its pages into the
main file. Bytes = growth of this process's ``/proc/self/io`` ``write_bytes`` (pages
dirtied in the page cache, counted once per dirtying; file-system journal not
included), divided by the readings written. Variants, readings only: the defaults
(1,000-row commits, every 80 ms at this load; checkpoint every 1,024 pages = 4 MiB of
WAL), one commit per second, an 8x larger and a 4x smaller checkpoint interval. Then
with the outbox: each second's telemetry messages (built by the real engine) stored in
one ``synchronous=FULL`` commit and the previous second's acknowledged (deleted).
``benchmarks.bench_gateway disk`` measures the whole agent (MQTT, status, logs too).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from edge_agent.buffer import outbox
from edge_agent.buffer.rows import SeriesIds
from edge_agent.buffer.schema import open_database
from edge_agent.buffer.writer import CACHE_KIB
from edge_agent.model import Reading

DEVICES = 100
REGISTERS = 125
SECONDS = 60


def _write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/self/io")


def _telemetry(second: int) -> list[str]:
    """The data parts the real telemetry engine builds for one second of the load."""
    from edge_agent.telemetry import PublishMode, PublishPolicy, TelemetryEngine

    every = PublishPolicy(mode=PublishMode.EVERY)
    engine = TelemetryEngine(
        {(f"d{d}", f"r{r}"): every for d in range(DEVICES) for r in range(REGISTERS)}, 1.0
    )
    for d in range(DEVICES):
        ts = 1_800_000_000.0 + second + d / 1000
        engine.ingest(
            [Reading(f"d{d}", f"r{r}", (second * 7 + r) & 0xFFFF, ts, ts) for r in range(REGISTERS)]
        )
    return [m.text for m in engine.due(1_800_000_000.0 + second + 0.9)]


def measure(
    rows_per_commit: int, autocheckpoint: int | None, with_outbox: bool = False
) -> tuple[float, float]:
    """(bytes written per reading, seconds of wall time) for one variant.

    ``with_outbox``: every second also stores that second's telemetry messages in the
    outbox in one ``synchronous=FULL`` commit (as ``Buffer.publish_many`` does) and
    acknowledges (deletes) the previous second's, as a connected agent does.
    """
    texts = _telemetry(0) if with_outbox else []
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        con, _moved = open_database(Path(tmp) / "buffer.db", 512 * 2**20)
        con.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # as the writer thread sets it
        if autocheckpoint is not None:
            con.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
        ids = SeriesIds()
        before, start = _write_bytes(), time.perf_counter()
        pending: list[Reading] = []
        written = 0
        unacked: list[int] = []
        for second in range(SECONDS):
            if with_outbox:
                con.execute("PRAGMA synchronous=FULL")
                seqs = outbox.insert(
                    con,
                    [
                        outbox.NewMessage(
                            kind="telemetry",
                            priority=outbox.Priority.LOW,
                            topic="edge/bench/telemetry/d",
                            data=text,
                            created=float(second),
                        )
                        for text in texts
                    ],
                )
                con.execute("PRAGMA synchronous=NORMAL")
                outbox.ack(con, unacked, second)
                unacked = seqs
            for d in range(DEVICES):
                ts = 1_800_000_000.0 + second + d / 1000
                pending += [
                    Reading(f"d{d}", f"r{r}", (second * 7 + r) & 0xFFFF, ts, ts)
                    for r in range(REGISTERS)
                ]
                if len(pending) >= rows_per_commit:
                    con.execute("BEGIN IMMEDIATE")
                    ids.insert(con, pending)
                    con.execute("COMMIT")
                    written += len(pending)
                    pending = []
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        elapsed = time.perf_counter() - start
        per_value = (_write_bytes() - before) / max(written, 1)
        con.close()
    return per_value, elapsed


VARIANTS: tuple[tuple[str, int, int | None, bool], ...] = (
    ("defaults (1,000-row commits, checkpoint 1,024 pages)", 1000, None, False),
    ("one commit per second (12,500 rows)", 12_500, None, False),
    ("checkpoint every 8,192 pages (32 MiB WAL)", 1000, 8192, False),
    ("checkpoint every 256 pages (1 MiB WAL)", 1000, 256, False),
    ("+ outbox: defaults", 1000, None, True),
    ("+ outbox: one readings commit per second", 12_500, None, True),
    ("+ outbox: checkpoint every 8,192 pages", 1000, 8192, True),
)


def main() -> None:
    """Print bytes written per reading for each variant."""
    print(
        f"storage writes: {DEVICES} x {REGISTERS} readings per simulated second, "
        f"{SECONDS} s, real buffer schema and pragmas, /proc/self/io write_bytes / readings "
        "(after a final checkpoint); '+ outbox': also each second's telemetry messages "
        "stored (FULL) and the previous second's acknowledged"
    )
    for name, rows, checkpoint, with_outbox in VARIANTS:
        per_value, elapsed = measure(rows, checkpoint, with_outbox)
        print(f"  {name:<55} {per_value:6.1f} bytes/reading  ({elapsed:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
