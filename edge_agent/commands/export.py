"""``edge-agent export``: dump part of the buffer as CSV or JSON Lines.

Reads the SQLite buffer through a **read-only** connection (``mode=ro``), so it
works while the agent runs (WAL readers never block the writer) and can never
modify or lock the buffer for writing. Time bounds are ISO 8601 (``Z`` or an
offset; a naive time is taken as UTC), half-open ``[from, to)``. Rows are
streamed in time order; nothing is loaded into memory as a whole.

Readings (``frames``, one per poll, and the ``readings`` rows of databases written
before schema 5, merged by time) have no time index (it would cost a third of the ingest
rate); their range is located by binary search over arrival order with one hour of
slack, then filtered exactly. Kinds: ``readings`` (raw tag values), ``intervals``
(machine state intervals), ``summaries`` (KPI records, with their publication time),
``events`` (comms lost/restored and stop events, merged in time order), ``samples`` (one
machine's sample journal: exactly the ``edge-agent replay`` input, JSON Lines only, in
the order the calculator was fed, with :data:`SAMPLES_MARGIN_S` more on each side: the
state and counter baseline at ``--from`` come from the samples before it, and the parts
counted between the last sample before ``--to`` and the next are spread over that
interval, so they need the sample after it).
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from edge_agent.cli import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    UsageError,
    add_config_argument,
    config_path,
    describe_os_error,
)

# Readings are located by arrival order; rows stamped more than this far out of order
# (a wall-clock step while running) may be missed at the edges of the range.
READINGS_SLACK_S = 3600.0

# A samples export also holds the samples this close to --from and --to (the default
# max_gap_s): what a record of a window at the edges of the range depends on.
SAMPLES_MARGIN_S = 3600.0

KINDS = ("readings", "intervals", "summaries", "events", "samples")
FORMATS = ("csv", "jsonl")

COLUMNS: dict[str, tuple[str, ...]] = {
    "readings": ("ts", "device", "tag", "value", "quality", "reason", "source_ts"),
    "intervals": ("machine", "start", "end", "data"),
    "summaries": ("created", "record_key", "seq", "published", "data"),
    "events": ("ts", "kind", "source", "detail"),
    "samples": (),
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``export`` sub-command."""
    p = sub.add_parser(
        "export",
        help="export buffered data as CSV or JSON Lines",
        description="Export a time range of the local buffer (read-only; safe while running).",
        epilog="Examples:\n"
        "  edge-agent export --from 2026-11-26T00:00Z --to 2026-11-27T00:00Z --kind readings "
        "-o readings.csv\n"
        "  edge-agent export agent.toml --from 2026-11-26 --to 2026-11-27 --kind summaries "
        "--format jsonl | head\n"
        "  edge-agent export --db /var/lib/edge-agent/buffer.db --from 2026-11-26 --to 2026-11-27 "
        "--kind events\n"
        "  edge-agent export agent.toml --from 2026-11-26 --to 2026-11-27 --kind samples "
        "--machine press1 -o press1.jsonl   # input of edge-agent replay",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_argument(
        p,
        help_text="agent TOML file; the buffer path is read from it "
        "(default /etc/edge-agent/agent.toml)",
    )
    p.add_argument("--db", type=Path, help="buffer database file (instead of a config file)")
    p.add_argument(
        "--from", dest="start", required=True, metavar="ISO", help="start time, inclusive"
    )
    p.add_argument("--to", dest="end", required=True, metavar="ISO", help="end time, exclusive")
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument(
        "--machine",
        metavar="NAME",
        help="with --kind samples: the machine (optional when the journal holds one)",
    )
    p.add_argument(
        "--format", choices=FORMATS, help="csv (default) or jsonl; --kind samples is jsonl"
    )
    p.add_argument("-o", "--output", type=Path, help="output file (default: stdout)")
    p.set_defaults(func=run)


def parse_time(text: str) -> float:
    """ISO 8601 date or date-time to UNIX seconds (naive means UTC; ``Z`` accepted on 3.10)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _time(value: Any) -> str | None:
    from edge_agent.uplink.payload import iso_utc

    return iso_utc(float(value)) if isinstance(value, int | float) else None


def _json(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def rows(
    con: sqlite3.Connection, kind: str, start: float, end: float, machine: str | None = None
) -> Iterator[dict[str, Any]]:
    """Export rows of one kind as dicts with the keys of :data:`COLUMNS`.

    ``samples``: the replay input objects of ``machine``, with the lead-in.
    """
    if kind == "samples":
        from edge_agent.buffer import journal

        margin = SAMPLES_MARGIN_S
        for _t, data in journal.read(con, machine or "", start - margin, end + margin):
            yield json.loads(data)
    elif kind == "readings":
        # Rows of databases written before schema 5, then frames: merged by time.
        merged = heapq.merge(
            _reading_rows(con, start, end), _frame_rows(con, start, end), key=_first
        )
        for _ts, item in merged:
            yield item
    elif kind == "intervals":
        cur = con.execute(
            "SELECT machine, start, end, data FROM intervals "
            "WHERE coalesce(end, start) >= ? AND start < ? "
            "ORDER BY start, id",
            (start, end),
        )
        for machine, i_start, i_end, data in cur:
            yield {
                "machine": machine,
                "start": _time(i_start),
                "end": _time(i_end),
                "data": _json(data),
            }
    elif kind == "summaries":
        cur = con.execute(
            "SELECT created, record_key, seq, published, data FROM kpi_records "
            "WHERE created >= ? AND created < ? ORDER BY created, seq",
            (start, end),
        )
        for created, key, seq, published, data in cur:
            yield {
                "created": _time(created),
                "record_key": key,
                "seq": seq,
                "published": _time(published),
                "data": _json(data),
            }
    else:
        cur = con.execute(
            "SELECT ts, 'comms', device, json_object('state', state, 'reason', reason) "
            "FROM comms_events WHERE ts >= ? AND ts < ? "
            "UNION ALL SELECT created, 'stop', record_key, data FROM stop_events "
            "WHERE created >= ? AND created < ? ORDER BY 1",
            (start, end, start, end),
        )
        for ts, event_kind, source, detail in cur:
            yield {"ts": _time(ts), "kind": event_kind, "source": source, "detail": _json(detail)}


_Timed = tuple[float, dict[str, Any]]


def _first(item: _Timed) -> float:
    return item[0]


def _reading_rows(con: sqlite3.Connection, start: float, end: float) -> Iterator[_Timed]:
    """Export rows of the ``readings`` table (one row per value, before schema 5)."""
    from edge_agent.buffer.retention import first_id_at
    from edge_agent.buffer.schema import QUALITY_NAMES

    # readings has no ts index: narrow by rowid (arrival order) with a slack, then filter.
    first = first_id_at(con, "readings", start - READINGS_SLACK_S) or 0
    last = first_id_at(con, "readings", end + READINGS_SLACK_S) or 0
    cur = con.execute(
        "SELECT r.ts, s.device, s.tag, r.value, r.quality, r.reason, r.source_ts "
        "FROM readings r JOIN series s ON s.id = r.series "
        "WHERE r.id >= ? AND r.id < ? AND r.ts >= ? AND r.ts < ? ORDER BY r.ts, r.id",
        (first, last, start, end),
    )
    for ts, device, tag, value, quality, reason, source_ts in cur:
        if isinstance(value, str) and value.startswith("["):
            value = _json(value)
        name = QUALITY_NAMES.get(quality, str(quality))
        yield ts, _reading(ts, device, tag, value, name, reason, source_ts)


def _frame_rows(con: sqlite3.Connection, start: float, end: float) -> Iterator[_Timed]:
    """Export rows of the ``frames`` table, the same as the rows of the same values.

    A ``bool`` is exported as 0/1, as the ``readings`` table stored it.
    """
    from edge_agent.buffer import blocks
    from edge_agent.buffer.schema import QUALITY_NAMES

    for v in blocks.read(con, start, end, slack_s=READINGS_SLACK_S):
        value = int(v.value) if v.value.__class__ is bool else v.value
        name = QUALITY_NAMES.get(v.quality, str(v.quality))
        yield v.ts, _reading(v.ts, v.device, v.tag, value, name, v.reason, v.source_ts)


def _reading(
    ts: float,
    device: str,
    tag: str,
    value: Any,
    quality: str,
    reason: str | None,
    source_ts: float | None,
) -> dict[str, Any]:
    return {
        "ts": _time(ts),
        "device": device,
        "tag": tag,
        "value": value,
        "quality": quality,
        "reason": reason or "",
        "source_ts": _time(source_ts),
    }


def write(out: IO[str], kind: str, fmt: str, items: Iterator[dict[str, Any]]) -> int:
    """Write rows as CSV (nested values as JSON text) or JSON Lines; returns the row count."""
    n = 0
    if fmt == "jsonl" or kind == "samples":
        for item in items:
            out.write(json.dumps(item, separators=(",", ":"), ensure_ascii=False) + "\n")
            n += 1
        return n
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS[kind])
    for item in items:
        writer.writerow(
            json.dumps(v, separators=(",", ":"))
            if isinstance(v, dict | list)
            else ("" if v is None else v)
            for v in (item[c] for c in COLUMNS[kind])
        )
        n += 1
    return n


def _db_path(args: argparse.Namespace) -> Path:
    given = config_path(args, default=None)
    if args.db is not None:
        if given is not None:
            raise UsageError("give a config FILE or --db, not both")
        return Path(args.db)
    from edge_agent.cli import DEFAULT_CONFIG
    from edge_agent.config import load_config

    return load_config(given or DEFAULT_CONFIG).storage.path


def run(args: argparse.Namespace) -> int:
    """Run the export: exit 0 on success, 2 on bad arguments, 1 if the buffer is unreadable."""
    from edge_agent.errors import ConfigError

    try:
        start, end = parse_time(args.start), parse_time(args.end)
    except ValueError as exc:
        print(f"edge-agent export: invalid time: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if end <= start:
        print("edge-agent export: --to must be after --from", file=sys.stderr)
        return EXIT_CONFIG
    if args.kind == "samples" and args.format == "csv":
        print("edge-agent export: --kind samples is written as jsonl only", file=sys.stderr)
        return EXIT_CONFIG
    if args.kind != "samples" and args.machine is not None:
        print("edge-agent export: --machine goes with --kind samples", file=sys.stderr)
        return EXIT_CONFIG
    try:
        path = _db_path(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    if not path.exists():
        print(f"edge-agent export: no buffer database at {path}", file=sys.stderr)
        return EXIT_FAILURE
    from edge_agent.buffer.schema import connect

    with ExitStack() as stack:
        try:
            con = connect(path, read_only=True)
        except sqlite3.Error as exc:
            print(f"edge-agent export: cannot open {path} read-only: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        stack.callback(con.close)
        machine = args.machine
        if args.kind == "samples" and machine is None:
            machine = _only_machine(con, path)
            if machine is None:
                return EXIT_CONFIG
        out: IO[str] = sys.stdout
        if args.output is not None:
            try:
                out = stack.enter_context(open(args.output, "w", encoding="utf-8", newline=""))
            except OSError as exc:
                print(f"edge-agent export: cannot write {describe_os_error(exc)}", file=sys.stderr)
                return EXIT_FAILURE
        try:
            con.execute("BEGIN")  # one snapshot for the whole export
            fmt = args.format or "csv"
            count = write(out, args.kind, fmt, rows(con, args.kind, start, end, machine))
        except sqlite3.Error as exc:
            print(f"edge-agent export: reading {path} failed: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    print(f"exported {count} {args.kind} rows", file=sys.stderr)
    return EXIT_OK


def _only_machine(con: sqlite3.Connection, path: Path) -> str | None:
    """The journal's machine when it holds exactly one, else None (the reason printed)."""
    from edge_agent.buffer import journal

    try:
        names = journal.machines(con)
    except sqlite3.Error as exc:
        print(f"edge-agent export: reading {path} failed: {exc}", file=sys.stderr)
        return None
    if len(names) == 1:
        return names[0]
    known = ", ".join(names) or "none journaled"
    print(f"edge-agent export: --kind samples needs --machine NAME ({known})", file=sys.stderr)
    return None
