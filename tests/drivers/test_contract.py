"""Shared driver-contract helper: every protocol's links must pass :func:`check_link_contract`.

The helper runs a link under :func:`drivers.base.run_link` with a recording
sink and proves, against a real peer the caller controls: it connects, reads
good readings with wall-clock and monotonic timestamps taken at the
response, reports quality, survives the peer disappearing (a comms-lost event
per device and bad readings), and recovers (comms-restored, good readings
again). Waiting is event-driven and bounded; nothing sleeps for a fixed time.

Use from a protocol's tests::

    case = ContractCase(link=..., tags_by_device=..., stop_peer=..., start_peer=...)
    await check_link_contract(case)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from drivers.base import Backoff, Link, run_link
from edge_agent.model import CommsEvent, CommsState, Confirmation, Quality, Reading


class RecordingSink:
    """A ReadingSink that records everything and lets tests await a condition."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.batches: list[list[Reading]] = []
        self.events: list[CommsEvent] = []
        self.confirmations: list[Confirmation] = []
        self._changed = asyncio.Event()

    def put_readings(self, readings: Sequence[Reading]) -> None:
        """Record one batch."""
        self.batches.append(list(readings))
        self.readings.extend(readings)
        self._changed.set()

    def put_comms(self, event: CommsEvent) -> None:
        """Record one comms event."""
        self.events.append(event)
        self._changed.set()

    def put_confirmation(self, confirmation: Confirmation) -> None:
        """Record one confirmation."""
        self.confirmations.append(confirmation)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Wait until ``predicate()`` holds, failing the test after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def good(self, device: str, tag: str) -> list[Reading]:
        """Good readings of one tag."""
        return [
            r
            for r in self.readings
            if r.device == device and r.tag == tag and r.quality is Quality.GOOD
        ]

    def states(self, device: str) -> list[CommsState]:
        """Comms states reported for one device, in order."""
        return [e.state for e in self.events if e.device == device]


@dataclass
class ContractCase:
    """What the contract check needs from a protocol's test."""

    link: Link
    tags_by_device: Mapping[str, Sequence[str]]
    stop_peer: Callable[[], Awaitable[None]]
    start_peer: Callable[[], Awaitable[None]]
    timeout_s: float = 10.0
    sink: RecordingSink = field(default_factory=RecordingSink)


def _all_good_since(sink: RecordingSink, case: ContractCase, since: int) -> bool:
    seen = {(r.device, r.tag) for r in sink.readings[since:] if r.quality is Quality.GOOD}
    return all((d, t) in seen for d, tags in case.tags_by_device.items() for t in tags)


async def check_link_contract(case: ContractCase) -> RecordingSink:
    """Run the driver contract against a live peer; return the sink for further asserts."""
    sink = case.sink
    devices = list(case.tags_by_device)
    task = asyncio.create_task(
        run_link(
            case.link,
            sink,
            tags_by_device=case.tags_by_device,
            backoff=Backoff(initial_s=0.05, max_s=0.2),
        )
    )
    try:
        # 1. connects and reads every tag with good quality, timestamped at the response.
        before_wall, before_mono = time.time(), time.monotonic()
        await sink.wait_for(
            lambda: _all_good_since(sink, case, 0), case.timeout_s, "first good readings"
        )
        first = sink.readings[0]
        assert before_wall - 1 <= first.ts <= time.time() + 1
        assert before_mono <= first.mono <= time.monotonic()
        assert all(r.value is not None for r in sink.readings if r.quality is Quality.GOOD)
        for dev in devices:
            assert sink.states(dev)[:1] == [CommsState.UP], f"{dev}: expected UP first"
        # 2. the peer disappears: one comms-lost event per device and bad readings.
        await case.stop_peer()
        await sink.wait_for(
            lambda: all(sink.states(d)[-1:] == [CommsState.DOWN] for d in devices),
            case.timeout_s,
            "comms-lost events",
        )
        for dev in devices:
            bad = [r for r in sink.readings if r.device == dev and r.quality is Quality.BAD]
            assert bad, f"{dev}: no bad readings after comms loss"
            assert all(r.value is None and r.reason for r in bad)
        # 3. the peer returns: comms-restored and good readings again.
        mark = len(sink.readings)
        await case.start_peer()
        await sink.wait_for(
            lambda: (
                all(sink.states(d)[-1:] == [CommsState.UP] for d in devices)
                and _all_good_since(sink, case, mark)
            ),
            case.timeout_s,
            "comms-restored and good readings",
        )
        for dev in devices:
            states = sink.states(dev)
            assert all(a is not b for a, b in itertools.pairwise(states)), (
                f"{dev}: repeated comms state in {states}"
            )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return sink
