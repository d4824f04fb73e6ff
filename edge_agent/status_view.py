"""Read the agent's status snapshot and render it for a technician.

The running agent writes ``<state_dir>/status.json`` atomically every
``interval_s`` seconds (the runtime owns the writer). This module loads that
file, decides whether the agent is running, stopped cleanly (the agent marks
its last snapshot with ``stopped_at``), crashed (the snapshot is stale and its
process is gone) or hung (stale, process still there), and renders it as
aligned plain-text tables: agent and clock, devices, tags, machines with
today's KPIs (flags shown next to the figure they qualify, explained below
the table), uplink, buffer and host health, every figure with its unit.

What it does not do: no network, no sockets to the agent, no writing. It never
trusts the snapshot's shape: missing or mistyped fields render as ``-`` so a
snapshot from an older or newer agent still shows what it can.

Guarantees: :func:`load_snapshot` raises only :class:`SnapshotError`, with a
message a technician can act on; :func:`render` is pure (the current time is a
parameter) and never raises on odd content.

Size: over 400 lines because renders every section of the status screen; pure formatting
without state, one small function per section.
"""

from __future__ import annotations

import enum
import json
import math
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_agent.errors import AgentError
from edge_agent.logtext import flag_text

__all__ = [
    "AgentState",
    "STALE_FACTOR",
    "STATUS_FILE",
    "SnapshotError",
    "agent_state",
    "format_age",
    "format_table",
    "is_stale",
    "load_snapshot",
    "render",
    "snapshot_age",
]

STATUS_FILE = "status.json"
#: A snapshot older than this many write intervals means the agent is not running or hung.
STALE_FACTOR = 3.0
_DEFAULT_INTERVAL_S = 2.0
_DASH = "-"
_MAX_CELL = 32


class SnapshotError(AgentError):
    """The status snapshot is missing, unreadable or not a snapshot."""


def load_snapshot(path: Path) -> dict[str, Any]:
    """Read and parse a status snapshot.

    Args:
        path: The ``status.json`` file.

    Returns:
        The parsed snapshot (a JSON object).

    Raises:
        SnapshotError: The file is missing, unreadable, not JSON or not an object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SnapshotError(
            f"No status snapshot at {path}. The agent is not running, has not written one "
            "yet, or this is not its state directory (see --state-dir / -c). "
            "Check: systemctl status edge-agent; journalctl -u edge-agent -n 50"
        ) from None
    except PermissionError:
        raise SnapshotError(
            f"Cannot read {path}: permission denied. Run as root (sudo edge-agent status) "
            "or as a member of the agent's group."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"Cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"{path} is not valid JSON ({exc}); the file is damaged") from None
    if not isinstance(data, dict):
        raise SnapshotError(f"{path} is not a status snapshot (expected a JSON object)")
    return data


def _num(value: Any) -> float | None:
    """A finite number from JSON, or ``None`` (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def snapshot_age(snapshot: Mapping[str, Any], now: float) -> float | None:
    """Seconds since the snapshot was written, or ``None`` without a valid ``written_at``."""
    written = _num(snapshot.get("written_at"))
    return None if written is None else now - written


def _interval(snapshot: Mapping[str, Any]) -> float:
    interval = _num(snapshot.get("interval_s"))
    return interval if interval and interval > 0 else _DEFAULT_INTERVAL_S


def is_stale(snapshot: Mapping[str, Any], now: float) -> bool:
    """True when the snapshot is older than :data:`STALE_FACTOR` write intervals (or undated)."""
    age = snapshot_age(snapshot, now)
    return age is None or age > STALE_FACTOR * _interval(snapshot)


class AgentState(str, enum.Enum):
    """What the snapshot says about the agent (``edge-agent status`` exit codes follow it)."""

    RUNNING = "running"
    STOPPED = "stopped"  # clean stop: the agent wrote ``stopped_at``
    CRASHED = "crashed"  # stale snapshot, its process is gone
    HUNG = "hung"  # stale snapshot, its process is still there
    STALE = "stale"  # stale, and whether the process lives is unknown


def agent_state(
    snapshot: Mapping[str, Any], now: float, *, process_alive: bool | None = None
) -> AgentState:
    """Classify the agent from its snapshot and whether its process exists.

    Args:
        snapshot: Parsed ``status.json``.
        now: Current epoch time.
        process_alive: Whether ``agent.pid`` is a live agent process (None: unknown).
    """
    if _num(snapshot.get("stopped_at")) is not None:
        return AgentState.STOPPED
    if not is_stale(snapshot, now):
        return AgentState.RUNNING
    if process_alive is True:
        return AgentState.HUNG
    if process_alive is False:
        return AgentState.CRASHED
    return AgentState.STALE


def format_age(seconds: float | None) -> str:
    """Human duration: ``<1s``, ``42s``, ``3m05s``, ``2h03m``, ``4d02h``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return _DASH
    if seconds < 0:
        return "in future"  # clock stepped back; say so rather than print nonsense
    s = int(seconds)
    if seconds < 1:
        return "<1s"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _ago(ts: Any, now: float) -> str:
    value = _num(ts)
    if value is None:
        return _DASH
    text = format_age(now - value)
    return text if text in (_DASH, "in future") else f"{text} ago"


def _pct(value: Any) -> str:
    number = _num(value)
    return _DASH if number is None else f"{number * 100:.1f}%"


def _bytes(value: Any) -> str:
    number = _num(value)
    if number is None:
        return _DASH
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(number) < 1024 or unit == "GiB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    return _DASH  # pragma: no cover - loop always returns


def _cell(value: Any) -> str:
    """Compact text for one value: numbers to 6 significant digits, long text cut."""
    if value is None:
        text = _DASH
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, int | str):
        text = str(value)
    else:
        text = json.dumps(value, separators=(",", ":"), default=str)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, indent: int = 2
) -> list[str]:
    """Left-aligned columns separated by two spaces; trailing spaces stripped."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    pad = " " * indent
    lines = []
    for row in (headers, *rows):
        line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
        lines.append((pad + line).rstrip())
    return lines


def _error_summary(errors: Any) -> str:
    items = sorted((str(k), v) for k, v in _map(errors).items() if _num(v))
    return ", ".join(f"{k}={int(v)}" for k, v in items) or "0"


def _rtt(diag: Mapping[str, Any], key: str) -> str:
    value = _num(_map(diag.get("rtt_ms")).get(key))
    return _DASH if value is None else f"{value:.1f} ms"


def _confirmed(diag: Mapping[str, Any], now: float) -> str:
    """How the device's values are confirmed: a flat line on a live link vs a dead one."""
    by = diag.get("confirmed_by")
    if not isinstance(by, str):
        return _DASH
    if by == "lapsed":
        return "LAPSED"
    if by == "keepalive" and _num(diag.get("last_change_ts")) is not None:
        return f"keepalive flat {_ago(diag.get('last_change_ts'), now).removesuffix(' ago')}"
    return by


def _devices_section(snapshot: Mapping[str, Any], now: float) -> list[str]:
    devices = _map(snapshot.get("devices"))
    if not devices:
        return ["DEVICES", "  (none configured)"]
    rows = []
    for name in sorted(devices):
        dev = _map(devices[name])
        diag = _map(dev.get("diagnostics"))
        comms = str(dev.get("comms") or diag.get("comms") or "unknown")
        rows.append(
            [
                str(name),
                _cell(dev.get("protocol")),
                "DOWN" if comms == "down" else comms,
                _rtt(diag, "avg"),
                _rtt(diag, "max"),
                _cell(diag.get("requests")),
                _error_summary(diag.get("errors")),
                _ago(diag.get("last_good_ts"), now),
                _confirmed(diag, now),
            ]
        )
    headers = (
        "DEVICE",
        "PROTOCOL",
        "COMMS",
        "RTT AVG",
        "RTT MAX",
        "REQUESTS",
        "ERRORS",
        "LAST GOOD",
        "CONFIRMED BY",
    )
    return ["DEVICES", *format_table(headers, rows)]


def _tags_section(snapshot: Mapping[str, Any], now: float) -> list[str]:
    rows = []
    omitted = 0
    devices = _map(snapshot.get("devices"))
    for dev_name in sorted(devices):
        device = _map(devices[dev_name])
        tags = _map(device.get("tags"))
        count = _num(device.get("tag_count"))
        if count is not None and count > len(tags):
            omitted += int(count) - len(tags)
        for tag_name in sorted(tags):
            tag = _map(tags[tag_name])
            quality = str(tag.get("quality") or "unknown")
            rows.append(
                [
                    str(dev_name),
                    str(tag_name),
                    _cell(tag.get("value")),
                    str(tag.get("unit") or _DASH),
                    quality if quality == "good" else quality.upper(),
                    format_age(None if _num(tag.get("ts")) is None else now - float(tag["ts"])),
                    _cell(tag.get("reason") or None),
                ]
            )
    note = []
    if omitted:
        limit = _num(snapshot.get("tags_max"))
        shown = f"at most {int(limit):,} tags" if limit is not None else "a limited number of tags"
        note = [
            f"  {omitted:,} more tags not listed: status.json carries {shown}, the ones not "
            "good first ([agent] status_tags_max)"
        ]
    if not rows:
        return ["TAGS", *(note or ["  (no readings yet)"])]
    table = format_table(("DEVICE", "TAG", "VALUE", "UNIT", "QUALITY", "AGE", "REASON"), rows)
    return ["TAGS", *table, *note]


def _flagged(rows_flags: list[tuple[str, list[str]]]) -> list[str]:
    """Footnotes explaining the flags marked ``*`` in the machines table."""
    notes = []
    for machine, flags in rows_flags:
        for flag in flags:
            text = flag_text(flag)
            notes += textwrap.wrap(
                f"* {machine} {text.column} {text.label} ({flag}): {text.meaning}",
                width=96,
                initial_indent="  ",
                subsequent_indent="    ",
            )
    return notes


def _machines_section(snapshot: Mapping[str, Any], now: float) -> list[str]:
    machines = _map(snapshot.get("machines"))
    if not machines:
        return ["MACHINES", "  (none configured)"]
    rows = []
    rows_flags: list[tuple[str, list[str]]] = []
    reload_notes: list[str] = []
    for name in sorted(machines):
        machine = _map(machines[name])
        today = _map(machine.get("today"))
        state = str(machine.get("state") or "unknown")
        fault = machine.get("fault")
        fault_text = _DASH if fault is None or fault == 0 else _cell(fault)
        if fault_text != _DASH and machine.get("fault_name"):
            fault_text = _cell(f"{fault} ({machine['fault_name']})")
        stops = _num(today.get("stops"))
        raw_flags = today.get("flags")
        flags = sorted(str(f) for f in raw_flags) if isinstance(raw_flags, list) else []
        marked = {flag_text(f).column for f in flags}
        if flags:
            rows_flags.append((str(name), flags))

        def mark(column: str, text: str, marked: set[str] = marked) -> str:
            return f"{text}*" if column in marked else text

        row = [
            str(name),
            state.upper() if state == "stopped" else state,
            mark(
                "FOR",
                format_age(
                    None if _num(machine.get("since")) is None else now - float(machine["since"])
                ),
            ),
            fault_text,
            mark("AVAIL", _pct(today.get("availability"))),
            mark("PERF", _pct(today.get("performance"))),
            mark("QUAL", _pct(today.get("quality"))),
            _pct(today.get("oee")),
            format_age(_num(today.get("downtime_total_s")))
            if today.get("downtime_total_s")
            else "0s",
            _DASH if stops is None else str(int(stops)),
        ]
        for part in machine.get("today_before_reload") or []:
            part = _map(part)
            reload_notes.append(
                f"  {name}: KPI profile changed at {_cell(part.get('end'))}; before it: "
                f"{_count(part.get('total_count'), 'parts')}, "
                f"downtime {format_age(_num(part.get('downtime_total_s')) or 0.0)}, "
                f"stops {_cell(part.get('stops'))}, OEE {_pct(part.get('oee'))} "
                f"(final record {_cell(part.get('name'))})"
            )
        if "FLAGS" in marked:
            row.append(
                ", ".join(flag_text(f).label for f in flags if flag_text(f).column == "FLAGS")
            )
        rows.append(row)
    headers = [
        "MACHINE",
        "STATE",
        "FOR",
        "FAULT",
        "AVAIL",
        "PERF",
        "QUAL",
        "OEE",
        "DOWNTIME",
        "STOPS",
    ]
    if any(len(r) > len(headers) for r in rows):
        headers.append("FLAGS")
        rows = [r + [""] * (len(headers) - len(r)) for r in rows]
    table = format_table(headers, rows)
    return ["MACHINES (today)", *table, *reload_notes, *_flagged(rows_flags)]


def _count(value: Any, unit: str) -> str:
    number = _num(value)
    return f"{_DASH if number is None else f'{int(number):,}'} {unit}"


def _uplink_line(snapshot: Mapping[str, Any]) -> list[str]:
    uplink = snapshot.get("uplink")
    if not isinstance(uplink, Mapping):
        return ["UPLINK    -"]
    connected = uplink.get("connected")
    state = (
        "connected" if connected is True else "DISCONNECTED" if connected is False else "unknown"
    )
    parts = [
        state,
        f"backlog {_count(uplink.get('backlog'), 'messages')}",
        f"in flight {_count(uplink.get('in_flight'), '')}".rstrip(),
        f"published {_count(uplink.get('published'), '')}".rstrip(),
    ]
    lines = ["UPLINK    " + "  ".join(parts)]
    if uplink.get("last_error"):
        lines.append(f"          last error: {_cell(uplink.get('last_error'))}")
    return lines


def _sum(value: Any) -> int:
    return int(sum(n for n in (_num(v) for v in _map(value).values()) if n is not None))


def _buffer_line(snapshot: Mapping[str, Any]) -> list[str]:
    """The buffer in plain words: disk used of the budget, what waits, what was lost."""
    buffer = snapshot.get("buffer")
    if not isinstance(buffer, Mapping) or not buffer:
        return ["BUFFER    -"]
    used = _num(buffer.get("db_bytes"))
    wal = _num(buffer.get("wal_bytes")) or 0.0
    budget = _num(buffer.get("max_bytes"))
    size = _bytes(None if used is None else used + wal)
    if budget:
        share = f" ({100 * ((used or 0) + wal) / budget:.0f}%)"
        size = f"{size} of {_bytes(budget)}{share}"
    parts = [f"disk {size}"]
    dropped = _sum(buffer.get("dropped"))
    parts.append(f"dropped {dropped:,} rows" if dropped else "nothing dropped")
    held = (_num(buffer.get("held_rows")) or 0) + (_num(buffer.get("queued_rows")) or 0)
    if held:
        parts.append(f"{int(held):,} rows waiting in memory")
    if buffer.get("disk_full"):
        why = "disk budget reached" if buffer.get("full_reason") == "budget" else "disk full"
        parts.append(f"FULL ({why}: oldest readings are evicted first)")
    lines = ["BUFFER    " + "  ".join(parts)]
    if dropped:
        kinds = ", ".join(
            f"{k} {int(v):,}" for k, v in sorted(_map(buffer.get("dropped")).items()) if _num(v)
        )
        lines.append(f"          dropped: {kinds}")
    if buffer.get("last_error"):
        lines.append(f"          last error: {_cell(buffer.get('last_error'))}")
    if buffer.get("moved_aside"):
        lines.append(f"          a damaged database was moved aside: {buffer.get('moved_aside')}")
    return lines


def _clock_text(health: Mapping[str, Any]) -> str:
    synced = health.get("clock_synced")
    if synced is True:
        return "synced"
    if synced is False:
        return "NOT SYNCED (timestamps may be wrong; check NTP / network)"
    return "unknown"


def _host_line(health: Mapping[str, Any]) -> list[str]:
    if not health:
        return ["HOST      -"]
    cpu = _num(health.get("cpu_percent"))
    temp = _num(health.get("cpu_temp_c"))
    parts = [
        f"cpu {_DASH if cpu is None else f'{cpu:.1f}%'}",
        f"rss {_bytes(health.get('rss_bytes'))}",
        f"disk free {_bytes(health.get('disk_free_bytes'))}",
        f"temp {_DASH if temp is None else f'{temp:.1f} °C'}",
    ]
    return ["HOST      " + "  ".join(parts)]


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def _banner(snapshot: Mapping[str, Any], now: float, state: AgentState) -> list[str]:
    """The line(s) saying whether the figures below are live, and if not, why."""
    age = snapshot_age(snapshot, now)
    interval = _interval(snapshot)
    pid = _cell(_map(snapshot.get("agent")).get("pid"))
    if state is AgentState.RUNNING:
        return []
    if state is AgentState.STOPPED:
        stopped = float(snapshot["stopped_at"])
        return [
            "",
            f"Agent stopped cleanly at {_when(stopped)} ({_ago(stopped, now)}). "
            "Figures below are from that moment.",
        ]
    how_old = "has no timestamp" if age is None else f"is {format_age(age)} old"
    if state is AgentState.CRASHED:
        banner = (
            f"!!! AGENT NOT RUNNING (crashed?): the last snapshot {how_old} and process {pid} "
            "is gone. Check: journalctl -u edge-agent -n 50 !!!"
        )
    elif state is AgentState.HUNG:
        banner = (
            f"!!! AGENT HUNG: process {pid} is there but the last snapshot {how_old} "
            f"(it is written every {interval:g}s). Figures below are out of date. !!!"
        )
    else:
        banner = (
            f"!!! AGENT NOT RUNNING OR HUNG: the last snapshot {how_old} "
            f"(it is written every {interval:g}s). Figures below are out of date. !!!"
        )
    return ["", "!" * len(banner), banner, "!" * len(banner)]


def render(
    snapshot: Mapping[str, Any], *, now: float | None = None, process_alive: bool | None = None
) -> str:
    """Render a snapshot as the technician's screen.

    Args:
        snapshot: Parsed ``status.json``.
        now: Current epoch time (default ``time.time()``); a parameter so tests are exact.
        process_alive: Whether the snapshot's agent process exists (None: unknown);
            tells a crash from a hang when the snapshot is stale.

    Returns:
        Multi-line text ending with a newline.
    """
    now = time.time() if now is None else now
    agent = _map(snapshot.get("agent"))
    health = _map(snapshot.get("health"))
    age = snapshot_age(snapshot, now)
    interval = _interval(snapshot)
    written = "snapshot undated" if age is None else f"snapshot written {_ago(now - age, now)}"
    state = agent_state(snapshot, now, process_alive=process_alive)
    lines = [
        "edge-agent status"
        f"  agent={_cell(agent.get('id'))}  version={_cell(agent.get('version'))}"
        f"  pid={_cell(agent.get('pid'))}  up {format_age(_num(agent.get('uptime_s')))}",
        f"{written} (every {interval:g}s)   clock: {_clock_text(health)}",
        *_banner(snapshot, now, state),
    ]
    lines.append("")
    lines += _devices_section(snapshot, now)
    lines.append("")
    lines += _tags_section(snapshot, now)
    lines.append("")
    lines += _machines_section(snapshot, now)
    lines.append("")
    lines += _uplink_line(snapshot)
    lines += _buffer_line(snapshot)
    lines += _host_line(health)
    return "\n".join(lines) + "\n"
