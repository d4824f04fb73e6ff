"""The event catalogue: counting and logging rules, and every event provoked in the agent.

The second half builds a real runtime (buffer open, nothing started), provokes each
event through the part that detects it, and checks the counter in the health message
the runtime emits, validated against ``schemas/health.schema.json``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from edge_agent.buffer import MessageKind, Priority
from edge_agent.config import load_config
from edge_agent.contracts import CalendarKind, Contract, Kpi, ServiceCalendar, Term
from edge_agent.contracts.book import chunk_at
from edge_agent.kpi import KpiRecord
from edge_agent.model import CommsEvent, CommsState, Reading
from edge_agent.ops.clock import ClockWatch
from edge_agent.ops.events import CATALOGUE, Event, EventLog
from edge_agent.reporting.answers import AnswerKind
from edge_agent.runtime import Runtime
from edge_agent.telemetry import PublishMode, PublishPolicy, TelemetryEngine
from edge_agent.uplink.payload import envelope
from tests.edge_agent.uplink.schemas import validate

SCHEMA = Path(__file__).resolve().parents[3] / "schemas" / "health.schema.json"


# -- counting and logging rules ---------------------------------------------------------
def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edge_agent.events"]


def test_a_condition_logs_once_on_entering_and_once_on_leaving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Entering twice logs one line; leaving logs one line with the duration; counts add up."""
    now = [100.0]
    events = EventLog(clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="edge_agent.events"):
        assert events.enter(Event.FLUSH_FAILED, "report", held=3)
        assert not events.enter(Event.FLUSH_FAILED, "report", held=4)
        now[0] = 112.5
        assert events.leave(Event.FLUSH_FAILED, "report")
        assert not events.leave(Event.FLUSH_FAILED, "report")
    assert lines(caplog) == [
        "Could not store records or messages, retrying stage=report held=3",
        "Storing records and messages again stage=report duration_s=12.5",
    ]
    assert events.counters[Event.FLUSH_FAILED] == 1  # counted in times: once per episode


def test_device_transitions_are_counted_here_and_logged_by_the_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """run_link already writes one line per device transition: the catalogue only counts."""
    events = EventLog()
    with caplog.at_level(logging.INFO, logger="edge_agent.events"):
        events.enter(Event.DEVICE_DOWN, "press1", reason="timeout")
        events.leave(Event.DEVICE_DOWN, "press1")
    assert lines(caplog) == []
    assert events.counters[Event.DEVICE_DOWN] == 1


def test_item_counters_add_every_loss_while_the_condition_lasts() -> None:
    """Counters of items (readings dropped ...) add each loss, not just the first."""
    events = EventLog()
    events.enter(Event.QUEUE_FULL, count=125)
    events.enter(Event.QUEUE_FULL, count=125)
    assert events.counters[Event.QUEUE_FULL] == 250


def test_conditions_are_per_subject_and_listed_while_active() -> None:
    """Two devices down are two conditions; the snapshot lists what is in force."""
    events = EventLog(clock=lambda: 5.0)
    events.enter(Event.DEVICE_DOWN, "a")
    events.enter(Event.DEVICE_DOWN, "b")
    events.leave(Event.DEVICE_DOWN, "a")
    snap = events.snapshot()
    assert snap["active"] == [{"event": "device_down", "subject": "b", "since": 5.0}]
    assert snap["counters"]["device_down"] == 2
    assert set(snap["counters"]) == {e.value for e in Event}


def test_an_occurrence_logs_each_time_with_its_detail(caplog: pytest.LogCaptureFixture) -> None:
    """Occurrences have no end: one line and one count each time."""
    events = EventLog()
    with caplog.at_level(logging.INFO, logger="edge_agent.events"):
        events.occurred(Event.RELOAD_REJECTED, detail="a.toml: agent.id: missing")
        events.occurred(Event.RELOAD_REJECTED, detail="a.toml: agent.id: missing")
    assert (
        lines(caplog)
        == ["Reload rejected, keeping the running configuration:\na.toml: agent.id: missing"] * 2
    )
    assert events.counters[Event.RELOAD_REJECTED] == 2


def test_the_health_schema_lists_exactly_the_catalogue() -> None:
    """One list: the schema's counters and active event names are the catalogue's."""
    schema = json.loads(SCHEMA.read_text())
    events = schema["$defs"]["data"]["properties"]["events"]["properties"]
    assert set(events["counters"]["required"]) == {e.value for e in Event}
    assert set(events["counters"]["properties"]) == {e.value for e in Event}
    conditions = {e.value for e, spec in CATALOGUE.items() if spec.leave is not None}
    assert set(events["active"]["items"]["properties"]["event"]["enum"]) == conditions
    assert set(CATALOGUE) == set(Event)


# -- every event provoked in a runtime ------------------------------------------------------
CONFIG = """
[agent]
id = "gw"
site = "lab"
state_dir = "{state}"

[storage]
max_mb = 1
queue_max_rows = {queue_max_rows}
flush_rows = {queue_max_rows}
flush_interval_ms = 10

[ingest]
queue_max_batches = 10

[devices.a]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:1"
unit_id = 1
addressing = "zero"

[devices.a.tags.running]
table = "coil"
address = 0
type = "bool"
publish = "every"

[devices.a.tags.count]
table = "holding"
address = 10
type = "uint32"

[machines.m]
run = "a.running"
good = "a.count"
total = "a.count"

[machines.m.kpi]
ideal_cycle_time_s = {ict}
"""

BIG = {"blob": "x" * 3000}  # about one page per outbox row


def poll(i: int, device: str = "a") -> list[Reading]:
    t = time.time()
    return [Reading(device, "running", True, t, t), Reading(device, "count", i, t, t)]


class Agent:
    """A runtime with its buffer open and nothing started, and a way to rewrite its file."""

    def __init__(self, tmp_path: Path, synced: list[bool]) -> None:
        self.path = tmp_path / "agent.toml"
        self.settings: dict[str, Any] = {
            "state": tmp_path / "state",
            "queue_max_rows": 1000,
            "ict": 2.0,
        }
        self.write()
        clock = ClockWatch(lambda: synced[0], 0.0)
        self.rt = Runtime(load_config(self.path), install_signals=False, clock=clock)

    def write(self, **changes: Any) -> None:
        """Rewrite the config file with ``changes``."""
        self.settings.update(changes)
        self.path.write_text(CONFIG.format(**self.settings))


async def fill_outbox_with_kpis(rt: Runtime) -> list[int]:
    """KPI rows (never evicted) until the budget refuses one."""
    seqs: list[int] = []
    for i in range(1000):
        try:
            seqs.append(
                await rt.buffer.publish("kpi", "t", BIG, priority=Priority.HIGH, record_key=f"{i}")
            )
        except Exception:
            return seqs
    pytest.fail("the budget never filled")


async def device_down(a: Agent, synced: list[bool]) -> None:
    rt = a.rt
    down = CommsEvent(device="a", state=CommsState.DOWN, ts=1.0, mono=1.0, reason="timeout")
    await rt.dispatcher.handle(down)
    await rt.dispatcher.handle(CommsEvent(device="a", state=CommsState.UP, ts=2.0, mono=2.0))


async def queue_full(a: Agent, synced: list[bool]) -> None:
    rt = a.rt
    for i in range(11):
        rt.queue.put_readings(poll(i))
    assert rt.queue.dropped_readings == 2
    await rt.dispatcher.drain(rt.queue)


async def buffer_dropped(a: Agent, synced: list[bool]) -> None:
    await a.rt.buffer.close()
    a.write(queue_max_rows=10)
    clock = ClockWatch(lambda: synced[0], 0.0)
    a.rt = Runtime(load_config(a.path), install_signals=False, clock=clock)
    await a.rt.buffer.open()
    a.rt.buffer.add_readings(poll(0) * 20)
    a.rt.watch.check()


async def budget_eviction(a: Agent, synced: list[bool]) -> None:
    rt = a.rt
    for chunk in range(40):
        rt.buffer.add_readings(
            [Reading("a", f"t{i % 7}", float(i), 1e9 + chunk * 1000 + i, 0.0) for i in range(1000)]
        )
        await rt.buffer.flush()
    await rt.buffer.run_maintenance()
    rt.watch.check()


async def telemetry_overflow(a: Agent, synced: list[bool]) -> None:
    rt = a.rt
    policy = {("a", "running"): PublishPolicy(mode=PublishMode.EVERY)}
    engine = TelemetryEngine(policy, 1.0, max_pending_readings=2)
    rt.telemetry.engine = engine
    for i in range(3):
        engine.ingest(poll(i))
    await rt.telemetry.round(time.time())


async def telemetry_late(a: Agent, synced: list[bool]) -> None:
    rt = a.rt
    policy = {("a", "count"): PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=5.0)}
    engine = TelemetryEngine(policy, 1.0)
    rt.telemetry.engine = engine
    for t in (100.0, 106.0, 103.0):  # 103 arrives after its window [100, 105) closed
        engine.ingest([Reading("a", "count", 1, t, t)])
    await rt.telemetry.round(time.time())


async def outbox_full(a: Agent, synced: list[bool]) -> None:
    rt = a.rt
    seqs = await fill_outbox_with_kpis(rt)
    # Several pages: whatever room the refused KPI row left (it depends on the schema's
    # page layout), this message cannot fit in it.
    rt.staging.stage(MessageKind.HEALTH, "t", {"blob": "x" * 4 * 4096})
    assert not await rt.staging.flush()
    await rt.buffer.ack(seqs)  # the uplink delivered them: space returns
    assert await rt.staging.flush()


async def outbox_dropped(a: Agent, synced: list[bool]) -> None:
    rt = a.rt
    await fill_outbox_with_kpis(rt)
    rt.staging.max_held = 2
    for i in range(3):
        # Several pages each (see outbox_full): none fits in the room the refused KPI row left.
        # Random text: telemetry is stored compressed, and "x" * n compresses to nothing.
        blob = random.Random(i).randbytes(4 * 4096).hex()
        rt.staging.stage(MessageKind.TELEMETRY, "t", {"i": i, "blob": blob})
    assert not await rt.staging.flush()
    assert rt.staging.dropped == {"telemetry": 1}


async def intervals_dropped(a: Agent, synced: list[bool]) -> None:
    rt = a.rt
    rt.staging.derived.max_intervals = 2
    source = ("calc:m", lambda: {"v": 1})
    closed = [{"start": float(i), "end": i + 1.0, "state": "running"} for i in range(3)]
    rt.staging.stage_intervals("m", closed, source)
    await rt.buffer.close()  # the commit fails: the intervals wait, one over the bound
    assert not await rt.staging.flush()
    assert rt.staging.figures()["dropped_intervals"] == 1
    await rt.buffer.open()
    assert await rt.staging.flush()


async def held_lost(a: Agent, synced: list[bool]) -> None:
    rt = a.rt
    rt.staging.stage(MessageKind.STOP, "t", {"event_id": "m@x"})
    await rt.buffer.close()  # the commit fails: the stop event is held in memory
    assert not await rt.staging.flush()
    # kill -9: nothing is closed; the next start finds the hold mark.
    a.rt = Runtime(load_config(a.path), install_signals=False, clock=rt.clock)
    await a.rt.buffer.open()
    previous = a.rt.staging.recover_hold()
    assert previous is not None
    assert previous.held == {"stop": 1}


async def clock_unsynced(a: Agent, synced: list[bool]) -> None:
    synced[0] = False
    a.rt.watch.check()
    synced[0] = True
    a.rt.watch.check()


async def flush_failed(a: Agent, synced: list[bool]) -> None:
    rt = a.rt
    rt.staging.stage(MessageKind.HEALTH, "t", {"x": 1})
    await rt.buffer.close()  # the commit fails: the message stays staged
    assert not await rt.staging.flush()
    assert len(rt.staging) == 1
    await rt.buffer.open()
    assert await rt.staging.flush()


async def status_write_failed(a: Agent, synced: list[bool]) -> None:
    rt = a.rt
    rt.status.path = rt.config.agent.state_dir / "missing" / "status.json"
    wrote = asyncio.Event()
    task = asyncio.create_task(rt.status.run(lambda: 3600.0, wrote.set))
    await asyncio.wait_for(wrote.wait(), 10)
    task.cancel()


async def reload_accepted(a: Agent, synced: list[bool]) -> None:
    assert await a.rt.reload()
    await a.rt.links.stop()


async def reload_rejected(a: Agent, synced: list[bool]) -> None:
    a.path.write_text(a.path.read_text().replace("unit_id = 1", 'unit_id = "one"'))
    assert not await a.rt.reload()


async def machine_reconfigured(a: Agent, synced: list[bool]) -> None:
    a.write(ict=3.0)
    assert await a.rt.reload()
    await a.rt.links.stop()


async def command_rejected(a: Agent, synced: list[bool]) -> None:
    assert await a.rt.contracts.handle_command("mqtt", b"not json") == "payload is not JSON"


def _stop(rt: Runtime) -> str:
    data = {"event_id": "m@2026-06-01T00:00:00Z", "machine": "m", "start": 1780272000.0}
    rt.contracts.decorate_stop(data | {"end": None})
    return data["event_id"]


async def stop_answered(a: Agent, synced: list[bool]) -> None:
    rt = a.rt
    assert await rt.contracts.answer(AnswerKind.ACK, _stop(rt), None, source="cli") is None


async def contract_alert(a: Agent, synced: list[bool]) -> None:
    rt = a.rt
    contract = Contract(
        name="c",
        machines=("m",),
        timezone="UTC",
        calendar=ServiceCalendar(kind=CalendarKind.ALWAYS),
        terms=(Term(name="sla", kpi=Kpi.SLA_AVAILABILITY, target=0.999),),
    )
    await rt.contracts.apply({"c": contract})
    now = time.time()
    chunk = chunk_at(contract, round(now * 1000))
    assert chunk is not None
    planned = now - chunk.start_ms / 1000
    record = KpiRecord(
        name=chunk.name,
        start=chunk.start_ms / 1000,
        end=chunk.end_ms / 1000,
        planned_time_s=planned,
        running_time_s=planned - 3600,
        downtime_breakdown_s=3600,
        downtime_provider_s=3600,
        failures=1,
        ttr_sum_s=3600,
    )
    rt.contracts.take("m", record)
    rt.contracts.round(now)


PROVOKE: dict[Event, Callable[[Agent, list[bool]], Awaitable[None]]] = {
    Event.DEVICE_DOWN: device_down,
    Event.QUEUE_FULL: queue_full,
    Event.BUFFER_DROPPED: buffer_dropped,
    Event.TELEMETRY_OVERFLOW: telemetry_overflow,
    Event.TELEMETRY_LATE: telemetry_late,
    Event.OUTBOX_FULL: outbox_full,
    Event.OUTBOX_DROPPED: outbox_dropped,
    Event.INTERVALS_DROPPED: intervals_dropped,
    Event.HELD_LOST: held_lost,
    Event.BUDGET_EVICTION: budget_eviction,
    Event.CLOCK_UNSYNCED: clock_unsynced,
    Event.FLUSH_FAILED: flush_failed,
    Event.STATUS_WRITE_FAILED: status_write_failed,
    Event.RELOAD_ACCEPTED: reload_accepted,
    Event.RELOAD_REJECTED: reload_rejected,
    Event.MACHINE_RECONFIGURED: machine_reconfigured,
    Event.COMMAND_REJECTED: command_rejected,
    Event.STOP_ANSWERED: stop_answered,
    Event.CONTRACT_ALERT: contract_alert,
}


def test_every_event_has_a_provocation() -> None:
    """A new event without a test here fails this test."""
    assert set(PROVOKE) == set(Event)


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[Agent, list[bool]]]:
    synced = [True]
    a = Agent(tmp_path, synced)
    (tmp_path / "state").mkdir()
    await a.rt.buffer.open()
    await a.rt.machines.start(a.rt.config.machines)
    yield a, synced
    await a.rt.links.stop()
    if a.rt.buffer.is_open:
        await a.rt.buffer.close()


@pytest.mark.parametrize("event", list(Event), ids=lambda e: e.value)
async def test_each_event_is_counted_logged_and_shown_in_the_health_message(
    agent: tuple[Agent, list[bool]], event: Event, caplog: pytest.LogCaptureFixture
) -> None:
    """Provoked through the part that detects it, the event reaches health telemetry.

    The health message is the one the runtime stages, read back from the outbox and put
    in its envelope, and it validates against the health schema. A condition is logged
    once when it starts (and once when it ends, when the provocation ends it).
    """
    a, synced = agent
    with caplog.at_level(logging.INFO, logger="edge_agent.events"):
        await PROVOKE[event](a, synced)
    rt = a.rt
    spec = event.spec
    logged = lines(caplog)
    expected = 1 if spec.logged else 0  # device transitions: logged by run_link
    assert sum(line.startswith(spec.enter) for line in logged) == expected, logged
    if spec.leave is not None and not rt.events.active(event, _subject(event)):
        assert sum(line.startswith(spec.leave) for line in logged) == expected, logged
    if not rt.buffer.is_open:
        await rt.buffer.open()
    for seq in [r.seq for r in await rt.buffer.fetch_outbox(after=0, limit=10_000)]:
        await rt.buffer.ack([seq])  # room for the health message
    rt.staging.max_held = 10_000
    await rt.health_report.publish()
    (row,) = [r for r in await rt.buffer.fetch_outbox(after=0, limit=10) if r.kind == "health"]
    message = json.loads(envelope(row, "gw", rt.buffer.epoch))
    validate(message)
    counters = message["data"]["events"]["counters"]
    assert counters[event.value] > 0
    others = {k for k, v in counters.items() if v and k != event.value}
    assert others <= _side_effects(event), others


def _subject(event: Event) -> str:
    return {
        Event.DEVICE_DOWN: "a",
        Event.FLUSH_FAILED: "outbox",
        Event.COMMAND_REJECTED: "mqtt",
    }.get(event, "")


def _side_effects(event: Event) -> set[str]:
    """Other counters a provocation may move as well."""
    return {
        Event.OUTBOX_DROPPED: {"outbox_full"},
        Event.MACHINE_RECONFIGURED: {"reload_accepted"},
        Event.BUDGET_EVICTION: {"buffer_dropped"},
        Event.INTERVALS_DROPPED: {"flush_failed"},
    }.get(event, set())
