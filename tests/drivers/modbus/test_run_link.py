"""The shared supervisor (run_link), GridClock and Backoff of drivers.base, scripted link."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Mapping

import pytest

from drivers.base import Backoff, DeviceDiagnostics, GridClock, PollResult, run_link
from edge_agent.errors import DeviceUnavailable
from edge_agent.model import CommsEvent, CommsState, Quality, Reading
from tests.drivers.test_contract import RecordingSink

Step = PollResult | Exception


class ScriptedLink:
    """A Link whose connect/poll outcomes follow a script, then block until cancelled."""

    def __init__(self, connects: list[bool], polls: list[Step]) -> None:
        self.connects = connects
        self.polls = polls
        self.closed = 0
        self.done = asyncio.Event()

    @property
    def name(self) -> str:
        """Link name."""
        return "scripted"

    @property
    def device_names(self) -> tuple[str, ...]:
        """Two devices."""
        return ("a", "b")

    async def connect(self) -> None:
        """Succeed or fail as scripted."""
        if self.connects and not self.connects.pop(0):
            raise DeviceUnavailable("refused")

    async def poll(self) -> PollResult:
        """Return or raise as scripted; block once the script is done."""
        if not self.polls:
            self.done.set()
            await asyncio.Event().wait()
        step = self.polls.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    async def close(self) -> None:
        """Count closes."""
        self.closed += 1

    def diagnostics(self) -> Mapping[str, DeviceDiagnostics]:
        """No diagnostics."""
        return {}


def reading(device: str) -> Reading:
    return Reading(device=device, tag="t", value=1, ts=1.0, mono=1.0)


async def run_script(link: ScriptedLink) -> RecordingSink:
    sink = RecordingSink()
    task = asyncio.create_task(
        run_link(link, sink, tags_by_device={"a": ("t",), "b": ("t",)}, backoff=Backoff(0.0, 0.0))
    )
    await asyncio.wait_for(link.done.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return sink


async def test_first_good_poll_reports_up_for_every_device() -> None:
    """The first successful poll emits UP for each device before its readings."""
    sink = await run_script(
        ScriptedLink([True], [PollResult(batches=[[reading("a")], [reading("b")]])])
    )
    assert [(e.device, e.state) for e in sink.events] == [
        ("a", CommsState.UP),
        ("b", CommsState.UP),
    ]
    assert len(sink.readings) == 2


async def test_link_loss_and_retries_emit_one_down_and_one_up() -> None:
    """Repeated failures give one DOWN per device with bad readings; recovery gives one UP."""
    poll_ok = PollResult(batches=[[reading("a")]])
    link = ScriptedLink([True, False, False, True], [poll_ok, DeviceUnavailable("reset"), poll_ok])
    sink = await run_script(link)
    assert sink.states("a") == [CommsState.UP, CommsState.DOWN, CommsState.UP]
    assert sink.states("b") == [CommsState.UP, CommsState.DOWN, CommsState.UP]
    bad = [r for r in sink.readings if r.quality is Quality.BAD]
    assert sorted(r.device for r in bad) == ["a", "b"]
    assert all(r.reason == "reset" for r in bad)
    assert link.closed >= 1


async def test_device_reported_down_by_the_link_is_not_duplicated() -> None:
    """A unit the link reports DOWN gets no UP on reconnect and no second DOWN on link loss."""
    down_b = CommsEvent(device="b", state=CommsState.DOWN, ts=1.0, mono=1.0, reason="timeout")
    link = ScriptedLink(
        [True, True],
        [PollResult(events=[down_b]), DeviceUnavailable("reset"), PollResult(events=[down_b])],
    )
    sink = await run_script(link)
    assert sink.states("a") == [CommsState.UP, CommsState.DOWN, CommsState.UP]
    assert sink.states("b") == [CommsState.DOWN]


def test_grid_clock_counts_skipped_ticks_without_bunching() -> None:
    """A poll that overruns by 3.5 intervals skips three ticks and resumes on the grid."""
    clock = GridClock(1.0, now=100.0)
    assert clock.next_due() == 100.0
    assert clock.advance(100.01) == 0
    assert clock.next_due() == 101.0
    assert clock.advance(104.5) == 3
    assert clock.next_due() == 105.0
    assert clock.skipped == 3


def test_grid_clock_does_not_drift_over_hours() -> None:
    """After 36 000 ticks of 1 s with jittered wake-ups, the next tick is exactly on the grid."""
    clock = GridClock(1.0, now=0.0)
    for k in range(36_000):
        clock.advance(k + 0.003 * (k % 7))
    assert clock.next_due() == 36_000.0
    assert clock.skipped == 0


async def test_an_unexpected_exception_is_a_lost_link_not_a_dead_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A library error escaping poll: devices down, reconnect, traceback at DEBUG only."""
    caplog.set_level(logging.DEBUG)
    link = ScriptedLink(
        [True, True],
        [struct.error("unpack requires a buffer of 2 bytes"), PollResult(batches=[[reading("a")]])],
    )
    sink = await run_script(link)
    assert sink.states("a") == [CommsState.DOWN, CommsState.UP]
    assert link.closed >= 1
    down = [e for e in sink.events if e.state is CommsState.DOWN]
    assert "unexpected error: error: unpack requires" in down[0].reason
    assert [r for r in caplog.records if r.levelno >= logging.WARNING and r.exc_info] == []
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)


async def test_each_device_transition_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """Up, loss (with reason) and recovery (with duration and reason) once per device, no retries.

    Five failed polls and three refused reconnects give no more lines than one: a PLC off
    all night is two lines per device in the journal, not thousands.
    """
    caplog.set_level(logging.DEBUG, logger="edge_agent.drivers")
    good = PollResult(batches=[[reading("a")], [reading("b")]])
    link = ScriptedLink(
        [True, False, False, False, True],
        [good, DeviceUnavailable("timeout"), good],
    )
    await run_script(link)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert lines[:2] == [
        "Device connected device=a link=scripted",
        "Device connected device=b link=scripted",
    ]
    assert lines[2:4] == [
        "Device comms lost, tags bad, retrying device=a link=scripted reason=timeout",
        "Device comms lost, tags bad, retrying device=b link=scripted reason=timeout",
    ]
    assert [line.rsplit(" down_for=", 1)[0] for line in lines[4:]] == [
        "Device comms restored device=a link=scripted",
        "Device comms restored device=b link=scripted",
    ]
    assert all(line.endswith("reason_was=timeout") for line in lines[4:])
    retries = [r for r in caplog.records if r.getMessage().startswith("Link down, retrying")]
    assert len(retries) == 4
    assert all(r.levelno == logging.DEBUG for r in retries)


async def test_a_device_never_reached_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    """A device that never answered since start is 'not reachable', once, with the reason."""
    caplog.set_level(logging.INFO, logger="edge_agent.drivers")
    link = ScriptedLink([False, False, False], [])
    sink = RecordingSink()
    task = asyncio.create_task(
        run_link(link, sink, tags_by_device={"a": ("t",), "b": ("t",)}, backoff=Backoff(0.0, 0.0))
    )
    while link.connects:
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert [r.getMessage() for r in caplog.records] == [
        "Device not reachable, retrying device=a link=scripted reason=refused",
        "Device not reachable, retrying device=b link=scripted reason=refused",
    ]
