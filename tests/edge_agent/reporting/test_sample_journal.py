"""Sample journal: ``export --kind samples`` -> ``replay`` reproduces the published records.

A simulated day (injected clocks, real calculators, real buffer file, the real CLI
commands): a machine polled every 10 s runs, stops on faults, loses its comms for
20 minutes, and the agent restarts twice (one clean stop, one crash that loses the
samples after the last saved state). Every final record the agent published is
recomputed by ``edge-agent replay`` from ``edge-agent export --kind samples``.
"""

from __future__ import annotations

import contextlib
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from edge_agent.buffer import Buffer, StorageConfig
from edge_agent.buffer.config import RawMode
from edge_agent.buffer.schema import connect
from edge_agent.cli import main
from edge_agent.config import AgentConfig, load_config
from edge_agent.kpi import Sample
from edge_agent.model import Quality, Reading
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.reporting.journal import journal_row
from edge_agent.reporting.machine import MachineSet
from edge_agent.reporting.reporter import Reporter
from edge_agent.uplink import TopicTemplates

DAY = datetime(2026, 11, 26, tzinfo=timezone.utc).timestamp()
POLL_S = 10.0
REPORT_S = 900.0
LATENESS_S = 120.0

KPI = """
ideal_cycle_time_s = 2.0
max_gap_s = 30.0
micro_stop_threshold_s = 60.0
timezone = "UTC"

[[shifts]]
name = "A"
start = "06:00"
end = "14:00"

[[shifts]]
name = "B"
start = "14:00"
end = "22:00"

[[shifts]]
name = "N"
start = "22:00"
end = "06:00"
"""

CONFIG = """
[agent]
id = "gw"
site = "lab"
state_dir = "{state}"

[reporting]
windows = ["day", "shift", "hour"]
allowed_lateness_s = {lateness}

[devices.a]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:1502"
unit_id = 1
addressing = "zero"

[devices.a.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.a.tags.fault]
table = "holding"
address = 2
type = "uint16"

[devices.a.tags.count]
table = "holding"
address = 10
type = "uint32"

[machines.m]
run = "a.running"
fault = "a.fault"
good = "a.count"
total = "a.count"

[machines.m.kpi]
{kpi}
"""

# Stops (start, end, fault) in seconds of the day; short ones are micro stops.
STOPS = [
    (3 * 3600, 3 * 3600 + 40, 0),
    (9 * 3600, 9 * 3600 + 900, 17),
    (19 * 3600, 19 * 3600 + 300, 4),
]
OUTAGE = (11 * 3600, 11 * 3600 + 1200)  # comms lost: bad readings
CLEAN_STOP = (8 * 3600, 8 * 3600 + 300)  # agent not running
CRASH = (15 * 3600 + 300, 15 * 3600 + 900)  # agent crashed (no state saved at the crash)


def kpi_table() -> str:
    return "\n".join(
        line.replace("[[shifts]]", "[[machines.m.kpi.shifts]]") for line in KPI.splitlines()
    )


def load(tmp_path: Path) -> AgentConfig:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state", lateness=LATENESS_S, kpi=kpi_table()))
    return load_config(path)


def poll(s: float, count: int) -> list[Reading]:
    """One poll of device a at second ``s`` of the day."""
    t = DAY + s
    if OUTAGE[0] <= s < OUTAGE[1]:
        return [
            Reading("a", tag, None, t, s, Quality.BAD, "timeout")
            for tag in ("running", "fault", "count")
        ]
    stop = next((f for a, b, f in STOPS if a <= s < b), None)
    return [
        Reading("a", "running", stop is None, t, s),
        Reading("a", "fault", stop or 0, t, s),
        Reading("a", "count", count, t, s),
    ]


class Agent:
    """The machine set and reporter of one agent run, on a clock the test moves."""

    def __init__(self, config: AgentConfig, buffer: Buffer) -> None:
        self.config = config
        self.buffer = buffer
        self.now = 0.0
        self.machines = MachineSet(buffer, config.reporting)
        staging = OutboxStaging(buffer, TopicTemplates.create(site="lab", agent="gw"))
        self.reporter = Reporter(self.machines, staging, buffer, clock=lambda: self.now)

    async def start(self) -> None:
        """Build (or restore) the machines from the buffer."""
        await self.machines.start(self.config.machines)


async def run_day(tmp_path: Path, raw: RawMode | None = None) -> Path:
    """Run the simulated day; returns the buffer file.

    ``raw``: also store every poll's raw readings with this ``[storage] raw`` mode (as
    the dispatcher does); None stores none.
    """
    config = load(tmp_path)
    storage = StorageConfig(path=tmp_path / "b.db", raw=raw or RawMode.BLOCKS)
    buffer = Buffer(storage, "gw")
    await buffer.open()
    agent = Agent(config, buffer)
    await agent.start()
    count = 0
    s = 0.0
    next_report = REPORT_S
    end = 86400 + LATENESS_S + 2 * REPORT_S
    while s < end:
        if CLEAN_STOP[0] <= s < CLEAN_STOP[1] or CRASH[0] <= s < CRASH[1]:
            if s == CLEAN_STOP[0]:  # clean stop: unknown from now, report, save state
                agent.now = DAY + s
                agent.machines.mark_unknown(DAY + s, s, True)
                await agent.reporter.report()
                await buffer.close()
            elif s == CRASH[0]:  # crash: the rows reach the file, the state does not
                await buffer.close()
            s += POLL_S
            continue
        if s in (CLEAN_STOP[1], CRASH[1]):
            buffer = Buffer(storage, "gw")
            await buffer.open()
            agent = Agent(config, buffer)
            await agent.start()
        batch = poll(s, count)
        if batch[0].value:
            count += 5
        agent.machines.feed(agent.machines.by_device["a"], batch, synced=True)
        if raw is not None:
            buffer.add_readings(batch)
        if s >= next_report:
            agent.now = DAY + s
            await agent.reporter.report()
            next_report += REPORT_S
        s += POLL_S
    await buffer.close()
    return storage.path


def published_finals(db: Path) -> list[dict[str, Any]]:
    con = connect(db, read_only=True)
    try:
        rows = con.execute("SELECT data FROM outbox WHERE kind = 'kpi' ORDER BY seq").fetchall()
    finally:
        con.close()
    finals = [json.loads(r[0]) for r in rows]
    return [d for d in finals if d.get("final")]


def cli(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


@pytest.mark.parametrize("raw", [None, RawMode.NONE])
async def test_export_then_replay_reproduces_every_published_final_record(
    tmp_path: Path, raw: RawMode | None
) -> None:
    """With ``raw = "none"`` no raw value is stored; the journal still replays every record."""
    db = await run_day(tmp_path, raw)
    if raw is RawMode.NONE:
        con = connect(db, read_only=True)
        assert con.execute("SELECT count(*) FROM frames").fetchone()[0] == 0
        con.close()
    finals = published_finals(db)
    # Each final record went out once, restarts included (a restored calculator's final
    # windows are not re-sent every round).
    assert len({(d["window"], d["revision"]) for d in finals}) == len(finals)
    names = {d["window"] for d in finals}
    assert "day:2026-11-26" in names
    assert {"shift:2026-11-26:A", "shift:2026-11-26:B"} <= names

    samples = tmp_path / "m.jsonl"
    cli(
        "export", "--db", str(db), "--kind", "samples", "--machine", "m",
        "--from", "2026-11-26T00:00:00Z", "--to", "2026-11-27T00:00:00Z", "-o", str(samples),
    )  # fmt: skip
    lines = samples.read_text().splitlines()
    # Each restart's "unknown" sample is in the journal; the crash lost what followed the
    # last saved state, and the journal with it (no sample between the two).
    bad = [json.loads(x) for x in lines if '"quality":"bad"' in x]
    assert any(b["t"].startswith("2026-11-26T08:00:00") for b in bad)
    crash_saved = DAY + 15 * 3600  # the last report before the crash saved the state
    times = [datetime.fromisoformat(json.loads(x)["t"]).timestamp() for x in lines]
    assert not [t for t in times if crash_saved + 1 < t < DAY + CRASH[1]]

    profile = tmp_path / "profile.toml"
    profile.write_text(KPI)
    # The export range is the day: every final record of a window inside it.
    inside = [
        r
        for r in finals
        if r["start"] >= "2026-11-26T00:00:00Z" and r["end"] <= "2026-11-27T00:00:00Z"
    ]
    assert len(inside) == 1 + 2 + 24  # the day, shifts A and B, 24 hours
    argv = ["replay", "--kpi", str(profile), "--samples", str(samples), "--json"]
    for i, rec in enumerate(inside):
        argv += ["--window", f"w{i}={rec['start']}/{rec['end']}"]
    replayed = json.loads(cli(*argv))
    for i, rec in enumerate(inside):
        out = replayed[f"w{i}"]
        compared = {
            k: v
            for k, v in rec.items()
            if k in out and k not in ("revision", "window", "window_kind")
        }
        assert compared == {k: out[k] for k in compared}, rec["window"]
        assert len(compared) > 15
    day = next(d for d in finals if d["window"] == "day:2026-11-26")
    assert day["unknown_time_s"] > 1200 + 300 + 900  # outage and both restarts


async def test_samples_export_names_its_machine_and_is_jsonl_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two machines journaled: --machine is required; csv is refused; the margin is 1 h."""
    buffer = Buffer(StorageConfig(path=tmp_path / "b.db"), "gw")
    await buffer.open()
    rows = [
        journal_row(machine, n, Sample(t=DAY + s, run=1, good=n, total=n))
        for machine in ("m", "p")
        for n, s in enumerate((-3700.0, -3500.0, 10.0, 86399.0, 86400 + 3500.0, 86400 + 3700.0))
    ]
    buffer.add_samples(rows)
    await buffer.close()
    args = ["export", "--db", str(tmp_path / "b.db"), "--kind", "samples"]
    args += ["--from", "2026-11-26", "--to", "2026-11-27"]
    assert main(args) == 2
    assert "needs --machine NAME (m, p)" in capsys.readouterr().err
    assert main([*args, "--machine", "p", "--format", "csv"]) == 2
    assert main([*args, "--machine", "p"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d["good"] for d in lines] == [1, 2, 3, 4]
    assert lines[0] == {
        "t": "2026-11-25T23:01:40Z",
        "run": 1,
        "fault": 0,
        "good": 1,
        "total": 1,
    }


async def test_a_reload_that_replaces_the_calculator_continues_the_journal(
    tmp_path: Path,
) -> None:
    """A changed KPI profile gets a new calculator; the machine's journal numbering goes on."""
    config = load(tmp_path)
    buffer = Buffer(StorageConfig(path=tmp_path / "b.db"), "gw")
    await buffer.open()
    machines = MachineSet(buffer, config.reporting)
    await machines.start(config.machines)
    for i in range(10):
        machines.feed(machines.by_device["a"], poll(i * POLL_S, i), synced=True)
    path = tmp_path / "agent.toml"
    path.write_text(
        path.read_text().replace("ideal_cycle_time_s = 2.0", "ideal_cycle_time_s = 3.0")
    )
    new = load_config(path)
    retired = await machines.reload(new.machines, new.reporting, clock=lambda: DAY + 95)
    assert [lm.config.name for lm in retired.machines] == ["m"]
    for i in range(10, 15):
        machines.feed(machines.by_device["a"], poll(i * POLL_S, i), synced=True)
    await buffer.flush()
    await buffer.close()
    con = connect(tmp_path / "b.db", read_only=True)
    try:
        ns = [r[0] for r in con.execute("SELECT n FROM samples WHERE machine = 'm' ORDER BY id")]
    finally:
        con.close()
    assert ns == list(range(1, 16))
