"""Link supervision with scripted links: diff by value, replacement after the old one closed.

Driven by events the test controls (no sleeps): a link's ``close()`` waits until the
test releases it, so the test can check that nothing connects meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest

from drivers.base import DeviceConfig, DeviceDiagnostics, DriverSpec, Link, PollResult
from edge_agent.backoff import Backoff
from edge_agent.configkit import Table
from edge_agent.links import LinkFailed, LinkSupervisor
from edge_agent.model import CommsEvent, Confirmation, Reading


@dataclass(frozen=True)
class FakeDevice:
    """A device config: equal by value, like the real ones."""

    name: str
    endpoint: str
    interval_ms: int = 1000
    protocol: str = "fake"
    tag_names: tuple[str, ...] = ("t",)


class Script:
    """What the fake links did, in order, and the gates the test opens."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.release_close = asyncio.Event()
        self.release_close.set()
        self.closing = asyncio.Event()
        self.swallow_cancel = 0


class FakeLink:
    """One endpoint; polls forever, closes when the script lets it."""

    def __init__(self, devices: Sequence[FakeDevice], script: Script) -> None:
        self._devices = list(devices)
        self._script = script
        self.name = devices[0].endpoint
        self._polled = False

    @property
    def device_names(self) -> tuple[str, ...]:
        """Devices on this link."""
        return tuple(d.name for d in self._devices)

    async def connect(self) -> None:
        """Log the connection."""
        self._script.log.append(("connect", self.name))

    async def poll(self) -> PollResult:
        """The first poll returns at once (the link is up); later ones wait forever."""
        if not self._polled:
            self._polled = True
            return PollResult()
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if self._script.swallow_cancel:
                    # What asyncio.wait_for does on Python < 3.12 when the awaited
                    # response lands together with the cancellation (CPython gh-86296).
                    self._script.swallow_cancel -= 1
                    continue
                raise

    async def close(self) -> None:
        """Log, then wait until the test releases the close."""
        self._script.log.append(("close", self.name))
        self._script.closing.set()
        await self._script.release_close.wait()
        self._script.log.append(("closed", self.name))

    def diagnostics(self) -> Mapping[str, DeviceDiagnostics]:
        """Empty counters."""
        return {d.name: DeviceDiagnostics() for d in self._devices}


class Sink:
    """Takes everything, keeps nothing; or fails, to stand for a bug behind the link."""

    def __init__(self) -> None:
        self.fail = False

    def put_readings(self, readings: Sequence[Reading]) -> None:
        """Drop the readings."""

    def put_confirmation(self, confirmation: Confirmation) -> None:
        """Drop the confirmation."""

    def put_comms(self, event: CommsEvent) -> None:
        """Drop the event (or raise, when asked to)."""
        if self.fail:
            raise ZeroDivisionError("a bug behind the link")


def supervisor(script: Script, sink: Sink | None = None) -> LinkSupervisor:
    def build_links(devices: Sequence[DeviceConfig]) -> list[Link]:
        by_endpoint: dict[str, list[FakeDevice]] = {}
        for d in devices:
            assert isinstance(d, FakeDevice)
            by_endpoint.setdefault(d.endpoint, []).append(d)
        return [FakeLink(devs, script) for devs in by_endpoint.values()]

    def parse(name: str, table: Table) -> DeviceConfig:
        raise NotImplementedError

    spec = DriverSpec(protocol="fake", parse_device=parse, build_links=build_links)
    return LinkSupervisor(
        sink or Sink(), specs=lambda: {"fake": spec}, backoff=lambda: Backoff(0, 0)
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_replaced_link_is_closed_before_its_successor_connects() -> None:
    """Same endpoint, changed device: the old link's close completes before the new connect."""
    script = Script()
    links = supervisor(script)
    await links.apply({"a": FakeDevice("a", "tcp://plc:502")})
    await settle()
    script.release_close.clear()
    reload = asyncio.create_task(links.apply({"a": FakeDevice("a", "tcp://plc:502", 500)}))
    await asyncio.wait_for(script.closing.wait(), 5)
    await settle()
    assert ("connect", "tcp://plc:502") not in script.log[1:]  # still closing: no new connection
    script.release_close.set()
    await asyncio.wait_for(reload, 5)
    await settle()
    assert script.log == [
        ("connect", "tcp://plc:502"),
        ("close", "tcp://plc:502"),
        ("closed", "tcp://plc:502"),
        ("connect", "tcp://plc:502"),
    ]
    await links.stop()


async def test_devices_equal_by_value_keep_their_link() -> None:
    """A reload with equal (not identical) device configs keeps the running link."""
    script = Script()
    links = supervisor(script)
    await links.apply({"a": FakeDevice("a", "tcp://x"), "b": FakeDevice("b", "tcp://y")})
    await settle()
    await links.apply({"a": FakeDevice("a", "tcp://x"), "b": FakeDevice("b", "tcp://y", 200)})
    await settle()
    assert script.log.count(("connect", "tcp://x")) == 1
    assert ("close", "tcp://x") not in script.log
    assert script.log.count(("connect", "tcp://y")) == 2
    assert sorted(links.names) == ["tcp://x", "tcp://y"]
    await links.stop()


async def test_a_cancellation_swallowed_by_the_driver_is_repeated() -> None:
    """A link that ignores the first cancel (wait_for race) is cancelled again and stops."""
    script = Script()
    links = supervisor(script)
    await links.apply({"a": FakeDevice("a", "tcp://x")})
    await settle()
    script.swallow_cancel = 1
    await asyncio.wait_for(links.stop(), 5)
    assert script.log[-1] == ("closed", "tcp://x")


async def test_a_failing_link_task_is_reported_to_the_supervisor() -> None:
    """A bug run_link cannot absorb ends its task: watch() raises, the agent stops.

    (A driver error inside connect/poll is a lost link, retried: run_link's own rule.)
    """
    script = Script()
    sink = Sink()
    sink.fail = True
    links = supervisor(script, sink)
    await links.apply({"a": FakeDevice("a", "tcp://x")})
    with pytest.raises(LinkFailed, match="ZeroDivisionError"):
        await asyncio.wait_for(links.watch(), 5)
    await links.stop()


async def test_diagnostics_stay_readable_while_the_agent_stops() -> None:
    """After stop() the links' diagnostics are still there (health, final status snapshot)."""
    script = Script()
    links = supervisor(script)
    await links.apply({"a": FakeDevice("a", "tcp://x")})
    await settle()
    await links.stop()
    assert set(links.diagnostics()) == {"a"}
    assert script.log[-1] == ("closed", "tcp://x")
