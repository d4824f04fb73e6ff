"""The telemetry pump: the engine's due messages into the outbox, a slice at a time.

:class:`TelemetryPump` owns the live :class:`~edge_agent.telemetry.TelemetryEngine`
(``None`` when no tag publishes). Once per publish interval it asks the engine for
what is due and stages it, committing every
:data:`~edge_agent.ops.tuning.TELEMETRY_VALUES_PER_COMMIT` values so a large
gateway's round never exists encoded all at once. It adds no
policy of its own: what is published and when is the engine's business.

With ``raw = "blocks"`` the pump also queues a cut among the readings (see
:mod:`edge_agent.buffer.telerefs`) right after each stretch of messages built without
an await, and gives every samples-only message the cut of its device's previous
message and this one: the outbox then stores a reference to the frames holding its
values, not the values a second time.

The engine's drop counters (readings over its backlog bound, aggregate readings
late for their window) become the events ``telemetry_overflow`` and
``telemetry_late`` after every round, including those of an engine replaced on
reload, so no drop goes uncounted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from edge_agent.buffer import MessageKind
from edge_agent.buffer.blocks import Cut
from edge_agent.buffer.telerefs import FrameRef
from edge_agent.config import AgentConfig
from edge_agent.ops.clock import ClockWatch
from edge_agent.ops.events import Event, EventLog
from edge_agent.ops.tuning import TELEMETRY_VALUES_PER_COMMIT
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.telemetry import TelemetryEngine, TelemetryMessage
from edge_agent.units import tag_units


def engine_for(config: AgentConfig) -> TelemetryEngine | None:
    """The engine of a configuration's publishing policies (None when no tag publishes)."""
    if not config.publish:
        return None
    return TelemetryEngine(
        config.publish,
        publish_interval_s=config.telemetry.interval_s,
        units=tag_units(config.devices),
    )


class TelemetryPump:
    """Moves due telemetry from the engine to the outbox staging.

    Args:
        engine: The engine fed by the dispatcher, or ``None`` when nothing publishes.
        staging: Where messages are staged and committed.
        clock: Clock status, to flag messages built while the clock is unsynchronised.
        events: Where the engine's drops are counted and logged.
    """

    def __init__(
        self,
        engine: TelemetryEngine | None,
        staging: OutboxStaging,
        clock: ClockWatch,
        events: EventLog | None = None,
    ) -> None:
        self.engine = engine
        self.staging = staging
        self.clock = clock
        self.events = events or EventLog()
        # Drop counts of the current engine already turned into events.
        self._seen = (0, 0)
        # The cut after each device's last message (see _stage).
        self._cuts: dict[str, Cut] = {}

    async def run(self, interval_s: float) -> None:
        """Stage what is due every ``interval_s`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await self.round(time.time())

    async def round(self, now: float) -> None:
        """Stage and commit the messages due at ``now``."""
        if self.engine is None:
            return
        unsynced = self.clock.unsynced(time.monotonic())
        await self._stage(self.engine.iter_due(now, clock_unsynced=unsynced))
        self._harvest(self.engine)

    async def flush(self, now: float) -> None:
        """Stage and commit everything pending, open aggregate windows included (shutdown)."""
        if self.engine is None:
            return
        unsynced = self.clock.unsynced(time.monotonic())
        await self._stage(self.engine.flush(now, clock_unsynced=unsynced))
        self._harvest(self.engine)

    async def replace(self, engine: TelemetryEngine | None) -> None:
        """Swap in a new engine (reload), then publish everything the old one held.

        Swapped first, so readings the dispatcher hands over meanwhile go to the new
        engine; the old one's pending values and open aggregate windows (as partial
        windows) are staged and committed, none lost.
        """
        old, self.engine = self.engine, engine
        seen, self._seen = self._seen, (0, 0)
        if old is not None:
            unsynced = self.clock.unsynced(time.monotonic())
            await self._stage(old.flush(time.time(), clock_unsynced=unsynced))
            self._harvest(old, seen)

    def _harvest(self, engine: TelemetryEngine, seen: tuple[int, int] | None = None) -> None:
        """Turn the engine's new drops into events (and end the conditions when none)."""
        stats = engine.stats
        before = self._seen if seen is None else seen
        if seen is None:
            self._seen = (stats.dropped_overflow, stats.dropped_late)
        for event, n in (
            (Event.TELEMETRY_OVERFLOW, stats.dropped_overflow - before[0]),
            (Event.TELEMETRY_LATE, stats.dropped_late - before[1]),
        ):
            if n > 0:
                self.events.enter(event, count=n)
            else:
                self.events.leave(event)

    async def _stage(self, messages: Iterable[TelemetryMessage]) -> None:
        staging = self.staging
        buffer = staging.buffer
        cuts = self._cuts
        values = 0
        cut: Cut | None = None
        for msg in messages:
            # Built from the polls queued so far: a cut now (no await since) follows
            # exactly those, and precedes the polls of the device's next message.
            if cut is None:
                cut = buffer.cut()
            frames = None
            start = cuts.get(msg.device)
            if cut is not None:
                cuts[msg.device] = cut
                if start is not None and msg.recipe is not None:
                    frames = FrameRef(msg.device, start, cut, msg.values, msg.recipe)
            topic = staging.topics.telemetry(device=msg.device)
            staging.stage(MessageKind.TELEMETRY, topic, msg.text, frames=frames)
            values += msg.values
            if values >= TELEMETRY_VALUES_PER_COMMIT:
                await staging.flush()
                values = 0
                cut = None
        await staging.flush()
