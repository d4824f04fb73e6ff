"""``edge-agent export``: read-only export of a buffer, including while it is open for writing."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer, Priority, StorageConfig
from edge_agent.cli import main
from edge_agent.commands.export import parse_time
from edge_agent.model import CommsEvent, CommsState, Reading

T0 = 1_795_000_000.0  # 2026-11-18T...Z


async def filled(path: Path) -> Buffer:
    buf = Buffer(StorageConfig(path=path), "gw1")
    await buf.open()
    buf.add_readings(
        [
            Reading(device="plc1", tag="speed", value=float(i), ts=T0 + i, mono=float(i))
            for i in range(10)
        ]
    )
    buf.add_readings([Reading(device="plc1", tag="arr", value=[1, 2], ts=T0 + 3.5, mono=0.0)])
    buf.add_comms(
        CommsEvent(device="plc1", state=CommsState.DOWN, ts=T0 + 2, mono=2.0, reason="timeout")
    )
    buf.add_intervals("press1", [{"start": T0, "end": T0 + 5, "state": "running"}])
    await buf.publish(
        "kpi", "t", {"oee": 0.5}, priority=Priority.HIGH, record_key="press1|hour|x|0"
    )
    await buf.publish(
        "stop", "t", {"machine": "press1"}, priority=Priority.HIGH, record_key="stop-1"
    )
    await buf.flush()
    return buf


def iso(ts: float) -> str:
    from edge_agent.uplink.payload import iso_utc

    return iso_utc(ts)


def test_parse_time_accepts_z_offsets_and_dates() -> None:
    """Z suffix, explicit offsets and naive times (UTC) all parse to the same instant."""
    assert parse_time("2026-01-01T00:00:00Z") == parse_time("2026-01-01T01:00:00+01:00")
    assert parse_time("2026-01-01") == parse_time("2026-01-01T00:00:00Z")


async def test_export_readings_csv_while_buffer_is_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Readings in [from, to) export as CSV via a read-only connection while the agent writes."""
    db = tmp_path / "b.db"
    buf = await filled(db)
    try:
        code = main(
            [
                "export",
                "--db",
                str(db),
                "--from",
                iso(T0 + 2),
                "--to",
                iso(T0 + 5),
                "--kind",
                "readings",
            ]
        )
        assert code == 0
        rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
        assert [r["value"] for r in rows] == ["2.0", "3.0", "[1,2]", "4.0"]
        assert rows[0]["ts"] == iso(T0 + 2)
        buf.add_readings([Reading(device="plc1", tag="speed", value=99.0, ts=T0 + 4.5, mono=0.0)])
        await buf.flush()  # the writer is not blocked by the exporter
    finally:
        await buf.close()


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("summaries", lambda r: r[0]["data"] == {"oee": 0.5} and r[0]["published"] is None),
        (
            "events",
            lambda r: (
                [x["kind"] for x in r] == ["comms", "stop"]
                or [x["kind"] for x in r] == ["stop", "comms"]
            ),
        ),
        ("intervals", lambda r: r[0]["machine"] == "press1" and r[0]["data"]["state"] == "running"),
    ],
)
async def test_export_other_kinds_jsonl(tmp_path: Path, kind: str, check: object) -> None:
    """Summaries, events and intervals export as JSON Lines to a file after the buffer is closed."""
    import time

    db = tmp_path / "b.db"
    buf = await filled(db)
    await buf.close()
    out = tmp_path / "out.jsonl"
    start, end = iso(T0 - 10), iso(time.time() + 10)
    assert (
        main(
            [
                "export",
                "--db",
                str(db),
                "--from",
                start,
                "--to",
                end,
                "--kind",
                kind,
                "--format",
                "jsonl",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows
    assert check(rows)  # type: ignore[operator]


def test_export_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad times exit 2; a missing database exits 1 with a message."""
    assert (
        main(
            [
                "export",
                "--db",
                str(tmp_path / "x.db"),
                "--from",
                "nope",
                "--to",
                "2026-01-01",
                "--kind",
                "readings",
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "export",
                "--db",
                str(tmp_path / "x.db"),
                "--from",
                "2026-01-02",
                "--to",
                "2026-01-01",
                "--kind",
                "readings",
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "export",
                "--db",
                str(tmp_path / "x.db"),
                "--from",
                "2026-01-01",
                "--to",
                "2026-01-02",
                "--kind",
                "readings",
            ]
        )
        == 1
    )
    assert "no buffer database" in capsys.readouterr().err
