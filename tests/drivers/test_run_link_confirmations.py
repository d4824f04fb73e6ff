"""run_link forwards a poll's confirmations after its readings (pure asyncio, fake link)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

from drivers.base import DeviceDiagnostics, PollResult, run_link
from edge_agent.model import CommsEvent, CommsState, Confirmation, Reading
from tests.drivers.test_contract import RecordingSink


class ScriptedLink:
    """Returns one scripted poll result, then waits forever."""

    def __init__(self, result: PollResult) -> None:
        self.result: PollResult | None = result
        self.closed = False

    @property
    def name(self) -> str:
        """Link name."""
        return "fake"

    @property
    def device_names(self) -> tuple[str, ...]:
        """One device."""
        return ("ua",)

    async def connect(self) -> None:
        """Always succeeds."""

    async def poll(self) -> PollResult:
        """The scripted result once, then never again."""
        if self.result is None:
            await asyncio.Event().wait()
        result, self.result = self.result, None
        assert result is not None
        return result

    async def close(self) -> None:
        """Remember the close."""
        self.closed = True

    def diagnostics(self) -> Mapping[str, DeviceDiagnostics]:
        """Empty diagnostics."""
        return {"ua": DeviceDiagnostics()}


class OrderSink(RecordingSink):
    """Also records the order of everything put."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    def put_readings(self, readings: Sequence[Reading]) -> None:
        """Record the order, then the batch."""
        self.order.append("readings")
        super().put_readings(readings)

    def put_comms(self, event: CommsEvent) -> None:
        """Record the order, then the event."""
        self.order.append(f"comms:{event.state.value}")
        super().put_comms(event)

    def put_confirmation(self, confirmation: Confirmation) -> None:
        """Record the order, then the confirmation."""
        self.order.append("confirmation")
        super().put_confirmation(confirmation)


async def test_confirmations_follow_the_readings_of_the_same_poll() -> None:
    """UP first, then the response's changes, then the confirmation of the unchanged values."""
    change = Reading(device="ua", tag="total", value=12, ts=1000.0, mono=5.0)
    confirmation = Confirmation(device="ua", ts=999.9, mono=4.9)
    link = ScriptedLink(PollResult(batches=[[change]], confirmations=[confirmation]))
    sink = OrderSink()
    task = asyncio.create_task(run_link(link, sink, tags_by_device={"ua": ("total",)}))
    try:
        await sink.wait_for(lambda: bool(sink.confirmations), 5.0, "the confirmation")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sink.order == ["comms:up", "readings", "confirmation"]
    assert sink.confirmations == [confirmation]
    assert [e.state for e in sink.events] == [CommsState.UP]
    assert link.closed
