"""Rendering of the status snapshot: staleness, tables, tolerance to odd content."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.status_view import (
    AgentState,
    SnapshotError,
    agent_state,
    format_age,
    format_table,
    is_stale,
    load_snapshot,
    render,
)

FIXTURE = Path(__file__).resolve().parents[1] / "cases" / "status" / "status.json"


@pytest.fixture
def snapshot() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


def test_missing_file_names_the_path_and_next_steps(tmp_path: Path) -> None:
    """A missing snapshot raises SnapshotError naming the file and what to check."""
    path = tmp_path / "status.json"
    with pytest.raises(SnapshotError) as info:
        load_snapshot(path)
    assert str(path) in str(info.value)
    assert "not running" in str(info.value)
    assert "journalctl -u edge-agent" in str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"), [("{not json", "not valid JSON"), ("[1, 2]", "not a status")]
)
def test_damaged_file_is_reported(tmp_path: Path, text: str, needle: str) -> None:
    """Invalid JSON or a non-object raises SnapshotError with a readable reason."""
    path = tmp_path / "status.json"
    path.write_text(text)
    with pytest.raises(SnapshotError, match=needle):
        load_snapshot(path)


def test_fixture_loads(snapshot: dict[str, Any]) -> None:
    """The fixture in the agreed snapshot format loads as a dict."""
    assert load_snapshot(FIXTURE) == snapshot


@pytest.mark.parametrize(
    ("age", "interval", "stale"),
    [(0.5, 2, False), (5.9, 2, False), (6.1, 2, True), (25.0, 10, False), (31.0, 10, True)],
)
def test_staleness_is_three_intervals(
    snapshot: dict[str, Any], age: float, interval: float, stale: bool
) -> None:
    """A snapshot is stale once it is older than three times its write interval."""
    snapshot["interval_s"] = interval
    assert is_stale(snapshot, snapshot["written_at"] + age) is stale


def test_undated_snapshot_is_stale() -> None:
    """Without written_at the snapshot cannot be trusted and counts as stale."""
    assert is_stale({"interval_s": 2}, 1e9)
    assert is_stale({"written_at": "yesterday"}, 1e9)


def test_render_fresh_snapshot(snapshot: dict[str, Any]) -> None:
    """A fresh snapshot shows devices, tags, machines with KPIs, uplink, buffer, host, no alarm."""
    text = render(snapshot, now=snapshot["written_at"] + 1.0)
    assert "AGENT NOT RUNNING" not in text
    assert "agent=gw-hall2" in text
    assert "clock: synced" in text
    lines = text.splitlines()
    oven = next(line for line in lines if line.strip().startswith("oven") and "opcua" in line)
    assert "DOWN" in oven
    assert "timeout=41" in oven
    assert "1h00m ago" in oven
    assert oven.rstrip().endswith("LAPSED")
    # A flat line on a live subscription: confirmed by keepalive 5 s ago, last change 5 min ago.
    line1 = next(line for line in lines if line.strip().startswith("line1"))
    assert "5s ago" in line1
    assert line1.rstrip().endswith("keepalive flat 5m01s")
    press = next(line for line in lines if "modbus_tcp" in line)
    assert press.rstrip().endswith("poll")
    assert "3.4 ms" in press
    assert "48.0 ms" in press
    assert "timeout=3" in press
    assert "illegal_address" not in press  # zero counts are noise
    tag = next(line for line in lines if "zone1_temp" in line)
    assert "BAD" in tag
    assert "timeout" in tag
    assert any("temperature" in line and "71.25" in line for line in lines)
    machine = next(line for line in lines if line.strip().startswith("press1") and "%" in line)
    for figure in ("91.2%", "85.0%", "99.0%", "76.8%", "53m05s", " 7"):
        assert figure in machine
    stopped = next(line for line in lines if "STOPPED" in line)
    assert "17" in stopped
    assert "DISCONNECTED" in text
    assert "backlog 1,250 messages" in text
    assert "last error: connection refused" in text
    assert "dropped 12 rows" in text
    assert "dropped: readings 12" in text
    assert "disk 10.0 MiB" in text
    assert "disk free 12.0 GiB" in text
    assert "temp 48.3 °C" in text


def test_render_stale_snapshot_is_loud(snapshot: dict[str, Any]) -> None:
    """A stale snapshot is announced as 'agent not running or hung' with its age."""
    text = render(snapshot, now=snapshot["written_at"] + 300)
    assert "AGENT NOT RUNNING OR HUNG" in text
    assert "5m00s old" in text


@pytest.mark.parametrize(
    ("alive", "state", "banner"),
    [
        (False, AgentState.CRASHED, "AGENT NOT RUNNING (crashed?)"),
        (True, AgentState.HUNG, "AGENT HUNG: process 4242 is there"),
        (None, AgentState.STALE, "AGENT NOT RUNNING OR HUNG"),
    ],
)
def test_stale_snapshot_tells_crash_from_hang(
    snapshot: dict[str, Any], alive: bool | None, state: AgentState, banner: str
) -> None:
    """Stale with the process gone is a crash, with the process there a hang."""
    now = snapshot["written_at"] + 300
    assert agent_state(snapshot, now, process_alive=alive) is state
    assert banner in render(snapshot, now=now, process_alive=alive)


def test_clean_stop_is_not_an_alarm(snapshot: dict[str, Any]) -> None:
    """A snapshot marked stopped_at says when the agent stopped cleanly, however old it is."""
    snapshot["stopped_at"] = snapshot["written_at"]
    now = snapshot["written_at"] + 3600
    assert agent_state(snapshot, now, process_alive=False) is AgentState.STOPPED
    text = render(snapshot, now=now, process_alive=False)
    assert "Agent stopped cleanly at " in text
    assert "(1h00m ago). Figures below are from that moment." in text
    assert "!!!" not in text


def test_flags_are_shown_next_to_the_figure_they_qualify(snapshot: dict[str, Any]) -> None:
    """performance_capped marks PERF (999.6% is not a typo) and is explained under the table."""
    today = snapshot["machines"]["press1"]["today"]
    today["performance"] = 9.996
    today["flags"] = ["performance_capped", "some_future_flag"]
    text = render(snapshot, now=snapshot["written_at"])
    lines = text.splitlines()
    row = next(line for line in lines if line.strip().startswith("press1") and "%" in line)
    assert "999.6%*" in row
    assert "91.2% " in row  # AVAIL is not qualified by these flags
    assert row.rstrip().endswith("some future flag")  # an unknown flag gets a FLAGS column
    assert any(line.strip().startswith("MACHINE") and "FLAGS" in line for line in lines)
    assert any(line.startswith("  * press1 PERF capped (performance_capped):") for line in lines)
    note = text.split("* press1 PERF", 1)[1].split("UPLINK", 1)[0]
    assert "ideal_cycle_time_s" in note
    assert all(len(line) <= 100 for line in lines if line.startswith("  "))


def test_buffer_line_is_plain_words() -> None:
    """The BUFFER line says disk used of the budget and what was lost, not writer internals."""
    buffer = {
        "db_bytes": 3 * 1024 * 1024,
        "wal_bytes": 1024 * 1024,
        "max_bytes": 512 * 1024 * 1024,
        "page_cap": 131072,
        "free_pages": 17,
        "queued_rows": 0,
        "held_rows": 0,
        "backlog": 3,
        "last_seq": 99,
        "written": {"readings": 1000},
        "dropped": {},
        "expired": {"readings": 5},
        "disk_full": False,
        "full_reason": "",
        "last_error": None,
        "moved_aside": None,
    }
    text = render({"written_at": 100.0, "interval_s": 5, "buffer": buffer}, now=101.0)
    line = next(line for line in text.splitlines() if line.startswith("BUFFER"))
    assert line == "BUFFER    disk 4.0 MiB of 512.0 MiB (1%)  nothing dropped"
    for internal in ("free_pages", "page_cap", "last_seq", "written", "="):
        assert internal not in text.split("BUFFER", 1)[1].split("HOST", 1)[0]


def test_render_unsynced_clock_warns(snapshot: dict[str, Any]) -> None:
    """An unsynchronised clock is called out, because timestamps may be wrong."""
    snapshot["health"]["clock_synced"] = False
    assert "NOT SYNCED" in render(snapshot, now=snapshot["written_at"])


def test_tables_are_aligned(snapshot: dict[str, Any]) -> None:
    """Every row of a table starts its columns at the header's offsets."""
    lines = format_table(("A", "LONG HEADER", "C"), [["xxxxx", "y", "z"], ["1", "22", "333"]])
    offsets = [line.index("LONG HEADER") for line in lines[:1]]
    assert lines[1][offsets[0]] == "y"
    assert lines[2][offsets[0] : offsets[0] + 2] == "22"
    assert lines[0].index("C") == lines[1].index("z") == lines[2].index("333")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (-3, "in future"),
        (0.2, "<1s"),
        (42.9, "42s"),
        (185, "3m05s"),
        (7380, "2h03m"),
        (352800, "4d02h"),
        (float("nan"), "-"),
    ],
)
def test_format_age(seconds: float | None, text: str) -> None:
    """Durations render compactly at the right unit."""
    assert format_age(seconds) == text


def test_render_empty_snapshot() -> None:
    """An empty object renders placeholders and the stale alarm instead of raising."""
    text = render({}, now=1e9)
    assert "(none configured)" in text
    assert "(no readings yet)" in text
    assert "no timestamp" in text


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
_sections = (
    "written_at",
    "interval_s",
    "agent",
    "devices",
    "machines",
    "uplink",
    "buffer",
    "health",
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(_sections), _json, max_size=8), st.floats(0, 2e9))
def test_render_never_raises_on_odd_content(data: dict[str, Any], now: float) -> None:
    """Any JSON content in any section renders to text without an exception."""
    assert render(data, now=now).endswith("\n")


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["devices", "machines"]),
    st.dictionaries(st.text(min_size=1, max_size=5), _json, min_size=1, max_size=3),
)
def test_render_tolerates_odd_entries(section: str, entries: dict[str, Any]) -> None:
    """Devices or machines with unexpected shapes still render (agent/CLI version skew)."""
    base: dict[str, Any] = json.loads(FIXTURE.read_text())
    data = copy.deepcopy(base)
    data[section] = entries
    assert "edge-agent status" in render(data, now=data["written_at"])
