"""Contracts in the reporter: real calculators, buffer and outbox, an injected clock.

One hour is the contract period (24/7, UTC): SLA availability >= 99 % (36 s of provider
downtime allowed) and >= 95 % (180 s), response time max <= 120 s to acknowledgement.
The machine runs, then stops on provider fault 17 for 60 s at +600 s. Every message the
reporter and the desk stage is read back from the outbox, put in its envelope and
validated against the schemas in ``schemas/``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from edge_agent.buffer import Buffer, StorageConfig
from edge_agent.config import AgentConfig, load_config
from edge_agent.contracts.replay import replay_contract
from edge_agent.ingest.dispatch import Dispatcher
from edge_agent.ingest.tags import TagState
from edge_agent.kpi import Sample
from edge_agent.model import Reading
from edge_agent.ops.clock import ClockWatch
from edge_agent.ops.events import Event, EventLog
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.outgoing.telemetry import TelemetryPump
from edge_agent.reporting.answers import AnswerKind
from edge_agent.reporting.contracts import ContractDesk
from edge_agent.reporting.machine import MachineSet
from edge_agent.reporting.reporter import Reporter
from edge_agent.uplink import TopicTemplates
from edge_agent.uplink.payload import envelope
from tests.edge_agent.uplink.schemas import validate

T0 = datetime(2026, 11, 26, 10, tzinfo=timezone.utc).timestamp()
CONTRACT_WINDOW = "contract:line:dates:2026-11-26T10:00:00Z/2026-11-26T11:00:00Z"

CONFIG = """
[agent]
id = "gw"
site = "lab"
state_dir = "{state}"

[reporting]
windows = []
allowed_lateness_s = 30

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

[devices.a.tags.tech]
table = "coil"
address = 1
type = "bool"

[machines.m]
run = "a.running"
fault = "a.fault"
good = "a.count"
total = "a.count"
arrive = "a.tech"

[machines.m.kpi]
ideal_cycle_time_s = 2.0
max_gap_s = 10.0
micro_stop_threshold_s = 5

[contracts.line]
machines = ["m"]
timezone = "UTC"
calendar = "24/7"
period = "dates"
start = 2026-11-26T10:00:00Z
end = 2026-11-26T11:00:00Z

[contracts.line.terms.sla]
kpi = "sla_availability"
target = 0.99
minimum = 0.95

[contracts.line.terms.response]
kpi = "response_time_s"
statistic = "max"
to = "acknowledged"
target = 120
"""


class Clock:
    """The wall clock the reporter and the desk read."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        """The current time."""
        return self.now


class Agent:
    """Machines, desk, reporter and dispatcher on one buffer (what the runtime wires)."""

    def __init__(self, config: AgentConfig, buffer: Buffer, clock: Clock) -> None:
        topics = TopicTemplates.create(site="lab", agent="gw")
        events = EventLog()
        self.staging = OutboxStaging(buffer, topics, events)
        self.machines = MachineSet(buffer, config.reporting, events)
        self.desk = ContractDesk(
            self.machines,
            self.staging,
            buffer,
            allowed_lateness_s=30,
            state_dir=config.agent.state_dir,
            events=events,
            clock=clock,
        )
        self.reporter = Reporter(
            self.machines, self.staging, buffer, events=events, clock=clock, contracts=self.desk
        )
        self.dispatcher = Dispatcher(
            buffer=buffer,
            tags=TagState(config.devices),
            telemetry=TelemetryPump(None, self.staging, ClockWatch(lambda: True, 0.0), events),
            machines=self.machines,
            staging=self.staging,
            clock=ClockWatch(lambda: True, 0.0),
            events=events,
            contracts=self.desk,
        )
        self.config = config
        self.events = events

    async def start(self) -> None:
        """Start machines and desk as the runtime does."""
        await self.machines.start(self.config.machines, self.config.contracts)
        await self.desk.start()


def config(tmp_path: Path) -> AgentConfig:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state"))
    return load_config(path)


def poll(t: float, *, running: bool, fault: int, count: int, tech: bool) -> list[Reading]:
    return [
        Reading("a", "running", running, t, t - T0),
        Reading("a", "fault", fault, t, t - T0),
        Reading("a", "count", count, t, t - T0),
        Reading("a", "tech", tech, t, t - T0),
    ]


async def play(
    agent: Agent,
    clock: Clock,
    until: float,
    *,
    every: float = 60.0,
    tech: tuple[float, float] = (0.0, 0.0),
) -> None:
    """Polls every second from the clock's time to ``until``; a report every ``every`` s.

    ``tech``: from when to when (seconds after T0) the "technician present" bit is set.
    """
    t = clock.now
    while t < until:
        t += 1.0
        stopped = T0 + 600 <= t < T0 + 660  # provider fault 17 for 60 s
        present = T0 + tech[0] <= t < T0 + tech[1]
        await agent.dispatcher.handle(
            poll(
                t,
                running=not stopped,
                fault=17 if stopped else 0,
                count=int(t - T0),
                tech=present,
            )
        )
        clock.now = t
        if (t - T0) % every == 0:
            await agent.reporter.report()


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    buf = Buffer(StorageConfig(path=tmp_path / "b.db"), "gw")
    await buf.open()
    yield buf
    await buf.close()


async def messages(buffer: Buffer) -> list[dict[str, Any]]:
    """Every staged message as its envelope (validated against its schema)."""
    out = []
    for row in await buffer.fetch_outbox(after=0, limit=100_000):
        doc = json.loads(envelope(row, "gw", buffer.epoch))
        if doc["kind"] in ("contract", "contract_alert", "contract_period"):
            validate(doc)
        out.append(doc)
    return out


def of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d["data"] for d in docs if d["kind"] == kind]


async def test_alerts_period_record_and_schemas(tmp_path: Path, buffer: Buffer) -> None:
    """Alerts at the rounds that see the change; the crossing dated at +720 s; closed at 11:00:30.

    The first sample is at +1 s, so 1 s is unknown and K + R = 3,599 s. At +630 s the
    stop so far (30 s) leaves 0.01 · 3,599 - 30 = 5.99 s against a pace of
    30 · 2,970 / 629 = 141.7 s: the 99 % target is at risk, and the unanswered
    breakdown puts the response term at risk. At +660 s the 60 s stop is over the
    35.99 s: breached; the 95 % minimum keeps 179.95 - 60 = 119.95 s, below its pace of
    60 · 2,940 / 659 = 267.7 s: at risk. The breakdown is never acknowledged: the 120 s
    bound passes at +720 s.
    """
    clock = Clock()
    agent = Agent(config(tmp_path), buffer, clock)
    await agent.start()
    await play(agent, clock, T0 + 600, every=30)
    await play(agent, clock, T0 + 3660, every=30)
    docs = await messages(buffer)
    alerts = of(docs, "contract_alert")
    assert [(a["alert"], a["term"], a["level"], a["state"], a["at"]) for a in alerts] == [
        ("level_state", "sla", "target", "at_risk", "2026-11-26T10:10:30Z"),
        ("level_state", "response", "target", "at_risk", "2026-11-26T10:10:30Z"),
        ("level_state", "sla", "target", "breached", "2026-11-26T10:11:00Z"),
        ("level_state", "sla", "minimum", "at_risk", "2026-11-26T10:11:00Z"),
        ("response_bound_crossed", "response", "target", "breached", "2026-11-26T10:12:00Z"),
    ]
    assert [a.get("budget") for a in alerts[:4]] == [5.99, 0.0, -24.01, 119.95]
    assert alerts[4]["event_id"] == "m@2026-11-26T10:10:00Z"
    statuses = of(docs, "contract")
    assert statuses[-1]["period"] == "dates:2026-11-26T10:00:00Z/2026-11-26T11:00:00Z"
    (period,) = of(docs, "contract_period")
    assert (period["final"], period["revision"]) == (True, 0)
    sla = period["terms"][0]
    assert period["components"]["unknown_time_s"] == 1.0  # before the first sample
    assert sla["so_far"] == 0.983329  # 1 - 60 / 3,599
    assert [lv["state"] for lv in sla["levels"]] == ["missed", "met"]
    # The period record is the sum of its KPI window's components (the final KPI record).
    (kpi,) = [d for d in of(docs, "kpi") if d["window"] == CONTRACT_WINDOW and d["final"]]
    for key, value in period["components"].items():
        assert kpi[key] == value, key
    assert kpi["machine"] == "m"
    assert period["profile_hashes"]["m"] == kpi["profile_hash"]


async def test_acknowledgement_within_the_bound_is_on_time(tmp_path: Path, buffer: Buffer) -> None:
    """Acknowledged 90 s after the onset: no crossing; the stop is republished with the answer."""
    clock = Clock()
    agent = Agent(config(tmp_path), buffer, clock)
    await agent.start()
    await play(agent, clock, T0 + 690)
    event_id = "m@2026-11-26T10:10:00Z"
    assert await agent.desk.answer(AnswerKind.ACK, event_id, None, source="cli") is None
    await play(agent, clock, T0 + 900)
    docs = await messages(buffer)
    alerts = [(a["alert"], a["term"], a["state"]) for a in of(docs, "contract_alert")]
    assert ("response_bound_crossed", "response", "breached") not in alerts
    assert ("level_state", "response", "at_risk") in alerts  # while it was unanswered
    stops = [s for s in of(docs, "stop") if s["event_id"] == event_id]
    assert stops[-1]["acknowledged_at"] == "2026-11-26T10:11:30Z"
    assert stops[-1]["end"] is not None  # the end update carries the answer too
    response = next(t for t in of(docs, "contract")[-1]["terms"] if t["term"] == "response")
    assert (response["so_far"], response["state"]) == (90.0, "on_track")


async def test_technician_present_bit_marks_the_arrival(tmp_path: Path, buffer: Buffer) -> None:
    """The PLC bit rising at +630 s during the stop sets arrived_at; rising again later does not."""
    clock = Clock()
    agent = Agent(config(tmp_path), buffer, clock)
    await agent.start()
    await play(agent, clock, T0 + 700, tech=(630, 640))
    docs = await messages(buffer)
    stops = [s for s in of(docs, "stop") if s["event_id"] == "m@2026-11-26T10:10:00Z"]
    assert stops[-1]["arrived_at"] == "2026-11-26T10:10:30Z"
    assert stops[-1]["acknowledged_at"] is None
    await play(agent, clock, T0 + 800, tech=(760, 770))  # no stop in progress: rejected
    assert agent.events.counters[Event.COMMAND_REJECTED] == 1
    assert agent.desk.answers.times() == {"m@2026-11-26T10:10:00Z": (None, (T0 + 630) * 1000)}


async def test_rejected_commands_change_nothing(tmp_path: Path, buffer: Buffer) -> None:
    """Wrong topic, malformed payload, unknown event: rejected, logged once, nothing staged."""
    clock = Clock()
    agent = Agent(config(tmp_path), buffer, clock)
    await agent.start()
    await play(agent, clock, T0 + 690)
    before = len(await buffer.fetch_outbox(after=0, limit=100_000))
    agent.desk.submit("edge/lab/other-gw/command", b'{"command": "ack", "event_id": "x"}')
    assert agent.desk.commands.empty()
    for body in (
        b"ack m@2026-11-26T10:10:00Z",
        b'{"command": "ack", "event_id": "m@2026-11-26T10:10:00Z", "who": "me"}',
        b'{"command": "ack", "event_id": "m@1999-01-01T00:00:00Z"}',
        b'{"command": "ack", "event_id": "m@2026-11-26T10:10:00Z", "at": "2026-11-26T10:00:00Z"}',
    ):
        assert await agent.desk.handle_command("mqtt", body) is not None
    assert agent.events.counters[Event.COMMAND_REJECTED] == 5
    assert len(await buffer.fetch_outbox(after=0, limit=100_000)) == before
    assert agent.desk.answers.times() == {}


async def test_restart_gives_the_same_status(tmp_path: Path, buffer: Buffer) -> None:
    """State saved by a round, everything dropped (kill -9), rebuilt: the same status."""
    clock = Clock()
    cfg = config(tmp_path)
    agent = Agent(cfg, buffer, clock)
    await agent.start()
    await play(agent, clock, T0 + 900)
    before = agent.desk.latest["line"]
    restarted = Agent(cfg, buffer, clock)
    await restarted.start()
    await restarted.reporter.report()
    after = restarted.desk.latest["line"]
    assert after == before
    assert restarted.desk.books["line"].states == agent.desk.books["line"].states


def samples_of_the_scenario(until: float) -> list[Sample]:
    """The samples the machine builds from the polls of :func:`play`."""
    out = []
    t = T0
    while t < until:
        t += 1.0
        stopped = T0 + 600 <= t < T0 + 660
        out.append(
            Sample(
                t=t,
                run=int(not stopped),
                fault=17 if stopped else 0,
                good=int(t - T0),
                total=int(t - T0),
            )
        )
    return out


async def test_replay_gives_the_agents_period_record(tmp_path: Path, buffer: Buffer) -> None:
    """A customer replaying the samples with the agent's config gets the same record."""
    clock = Clock()
    cfg = config(tmp_path)
    agent = Agent(cfg, buffer, clock)
    await agent.start()
    await play(agent, clock, T0 + 3660, every=30)
    (published,) = of(await messages(buffer), "contract_period")
    replayed = replay_contract(
        cfg.contracts["line"],
        {"m": cfg.machines["m"].kpi},
        {"m": samples_of_the_scenario(T0 + 3660)},
        at_ms=round(T0 * 1000),
        final=True,
        allowed_lateness_s=cfg.reporting.allowed_lateness_s,
    )
    published.pop("revision")
    assert replayed == published


async def test_command_files_are_answered(tmp_path: Path, buffer: Buffer) -> None:
    """`edge-agent ack` leaves a file; the desk answers it (.done) and applies it once."""
    clock = Clock()
    agent = Agent(config(tmp_path), buffer, clock)
    await agent.start()
    await play(agent, clock, T0 + 690)
    spool = tmp_path / "state" / "commands"
    spool.mkdir(parents=True)
    good = {"command": "ack", "event_id": "m@2026-11-26T10:10:00Z"}
    (spool / "1.json").write_text(json.dumps(good))
    (spool / "2.json").write_text(json.dumps(good | {"event_id": "nope"}))
    await agent.desk.poll_spool()
    assert json.loads((spool / "1.done").read_text()) == {"ok": True, "reason": None}
    verdict = json.loads((spool / "2.done").read_text())
    assert verdict == {"ok": False, "reason": "no such stop event (unknown event_id)"}
    assert sorted(p.name for p in spool.iterdir()) == ["1.done", "2.done"]
    assert agent.desk.answers.times() == {"m@2026-11-26T10:10:00Z": ((T0 + 690) * 1000, None)}


async def test_acknowledgement_after_a_restart(tmp_path: Path, buffer: Buffer) -> None:
    """The breakdown starts at +600 s; the agent dies at +690 s; the ack comes after the restart.

    The answer is stamped +700 s (100 s after the onset, within the 120 s bound): the
    restarted agent still knows the stop event and the breakdown, so the response is
    100 s, on track, and no bound is crossed later.
    """
    clock = Clock()
    cfg = config(tmp_path)
    first = Agent(cfg, buffer, clock)
    await first.start()
    await play(first, clock, T0 + 690)  # the round at +660 saved the books and answers
    restarted = Agent(cfg, buffer, clock)
    await restarted.start()
    event_id = "m@2026-11-26T10:10:00Z"
    at = round((T0 + 700) * 1000)
    assert await restarted.desk.answer(AnswerKind.ACK, event_id, at, source="mqtt") is None
    await play(restarted, clock, T0 + 900)
    response = next(t for t in restarted.desk.latest["line"]["terms"] if t["term"] == "response")
    assert (response["so_far"], response["state"]) == (100.0, "on_track")
    alerts = of(await messages(buffer), "contract_alert")
    assert not [a for a in alerts if a["alert"] == "response_bound_crossed"]


async def test_reload_with_a_changed_profile_keeps_every_second(
    tmp_path: Path, buffer: Buffer
) -> None:
    """A profile change at +1,800 s splits the contract window; the period sums both parts."""
    clock = Clock()
    cfg = config(tmp_path)
    agent = Agent(cfg, buffer, clock)
    await agent.start()
    await play(agent, clock, T0 + 1800)
    path = tmp_path / "agent.toml"
    path.write_text(
        path.read_text().replace("ideal_cycle_time_s = 2.0", "ideal_cycle_time_s = 1.5")
    )
    new = load_config(path)
    retired = await agent.machines.reload(
        new.machines, new.reporting, new.contracts, clock=lambda: T0 + 1800
    )
    await agent.reporter.retire(retired)
    await agent.desk.apply(new.contracts)
    await play(agent, clock, T0 + 3660, every=30)
    docs = await messages(buffer)
    (period,) = of(docs, "contract_period")
    parts = [k for k in of(docs, "kpi") if k["window"].startswith(CONTRACT_WINDOW) and k["final"]]
    assert sorted(k["window"] for k in parts) == [
        CONTRACT_WINDOW,
        f"{CONTRACT_WINDOW}~2026-11-26T10:30:00Z",
    ]
    assert period["components"]["planned_time_s"] == 3600.0  # no hole at the reload
    assert period["components"]["planned_time_s"] == sum(k["planned_time_s"] for k in parts)
    assert period["components"]["downtime_provider_s"] == 60.0
    assert period["profile_hashes"]["m"] == parts[-1]["profile_hash"]  # the profile in force


class Crash(Exception):
    """The process dies here (``kill -9``)."""


async def test_a_crash_after_the_rounds_commit_does_not_repeat_its_alerts(
    tmp_path: Path, buffer: Buffer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The books' state is committed with the round's messages, not saved after them.

    The round at +630 s stages the first alerts (at risk). The process dies at any
    separate state save after that commit (none is left: the test fails on the old
    order, which saved the books after the commit and so lost them here). The
    restarted agent runs the round again: no alert twice.
    """
    clock = Clock()
    cfg = config(tmp_path)
    agent = Agent(cfg, buffer, clock)
    await agent.start()
    await play(agent, clock, T0 + 600, every=30)

    async def crash(key: str, value: Any) -> None:
        raise Crash(key)

    with monkeypatch.context() as m:
        m.setattr(buffer, "save_state", crash)
        with contextlib.suppress(Crash):
            await play(agent, clock, T0 + 630, every=30)
    first = of(await messages(buffer), "contract_alert")
    assert [(a["term"], a["state"]) for a in first] == [
        ("sla", "at_risk"),
        ("response", "at_risk"),
    ]
    restarted = Agent(cfg, buffer, clock)
    await restarted.start()
    await restarted.reporter.report()
    assert of(await messages(buffer), "contract_alert") == first
