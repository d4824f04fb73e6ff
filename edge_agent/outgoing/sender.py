"""The sender: the MQTT uplink in force, started with the agent, replaced when ``[mqtt]`` changes.

:class:`Sender` owns the :class:`~edge_agent.uplink.Uplink` and its task, keeps the
outbox staging's topic templates in step with it, tells it what the agent reports
(Sparkplug's metric catalog) and forwards device comms changes (Sparkplug's device
births and deaths). The uplink itself drains the outbox; nothing here touches
messages.

Guarantees: on replacement the old uplink is stopped (bounded wait for in-flight
PUBACKs, ``offline`` published) and its task ended before the new one starts, so one
client id is never connected twice; rows in flight stay in the outbox and are
re-sent by the new uplink.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from edge_agent.buffer import Buffer
from edge_agent.config import AgentConfig
from edge_agent.model import Reading
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.uplink import Uplink

log = logging.getLogger("edge_agent.runtime")


class Sender:
    """The uplink in force and its task.

    Args:
        config: The configuration (``[mqtt]``, agent id and site).
        buffer: The buffer whose outbox the uplink drains.
        staging: Whose topic templates follow the uplink's.
        tags: The latest reading per device and tag (Sparkplug births announce them).
    """

    def __init__(
        self,
        config: AgentConfig,
        buffer: Buffer,
        staging: OutboxStaging,
        tags: Mapping[str, Mapping[str, Reading]],
    ) -> None:
        self.buffer = buffer
        self.staging = staging
        self.tags = tags
        self.uplink = self._build(config)
        self.task: asyncio.Task[None] | None = None

    def _build(self, config: AgentConfig) -> Uplink:
        uplink = Uplink(config.mqtt, self.buffer, agent_id=config.agent.id, site=config.agent.site)
        uplink.describe(config, self.tags)
        self.staging.topics = uplink.topics
        return uplink

    def start(self) -> None:
        """Start draining the outbox (connects in the background)."""
        self.task = asyncio.create_task(self.uplink.run(), name="uplink")

    async def reconfigure(self, old: AgentConfig, new: AgentConfig) -> None:
        """After a reload: a new uplink when ``[mqtt]`` changed, else a new description."""
        if new.mqtt == old.mqtt:
            self.uplink.describe(new, self.tags)
            return
        log.info("Reload: restarting the uplink with the new [mqtt] settings")
        await self.stop()
        self.uplink = self._build(new)
        self.start()

    async def stop(self) -> None:
        """Stop the uplink (bounded) and end its task."""
        await self.uplink.stop()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    def device_comms(self, device: str, up: bool) -> None:
        """A device's comms went up or down (Sparkplug: DBIRTH / DDEATH)."""
        self.uplink.device_comms(device, up)

    def state(self) -> dict[str, Any]:
        """The uplink's connection and delivery figures (health, status)."""
        return self.uplink.state()
