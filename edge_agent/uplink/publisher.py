"""Store-and-forward uplink: drains the SQLite outbox to the broker, deleting rows on PUBACK.

Delivery is a transaction (conventions.md item 9). Guarantees, in the style of
Telegraf's tsd-005:

* **No loss.** Every message is an outbox row before it is published. A row is
  deleted only when the PUBACK for its mid arrives on the connection it was sent
  on (under MQTT 5 only when ``reason_code.is_failure`` is false). A rejected
  publish (v5 failure reason) stays in the outbox, is counted in ``rejected`` and
  is re-sent after the next reconnect.
* **Priority, then order.** When more rows wait than fit in flight, the most
  important class goes first (smaller ``priority``: KPI/stop 0, health 5,
  telemetry 9), in strict ``seq`` order within a class (``oldest_first``); a less
  important class still gets one send in :data:`~edge_agent.uplink.drain.SHARE_EVERY`
  while a more important one waits, so it is never starved. With ``live_first``
  the rows newer than the connection share each class with its backlog. Order
  *across* classes is not ``seq`` order. After a broker outage or an agent
  restart publishing resumes at the oldest unacknowledged row of each class.
* **At-least-once.** Rows in flight when a connection drops are re-sent (same
  bytes, same ``seq``); the consumer de-duplicates on ``(agent, seq)`` with a set
  (not "highest seen": classes overtake each other). A gap in ``seq`` that stays
  after the backlog is drained means data was evicted under the disk budget
  (counted in the buffer's stats) - it is never silent.
* **Bounded.** At most ``max_in_flight`` publishes are outstanding; paho's RAM
  queue is bounded to the same size. The pending mid map is cleared on every
  disconnect, and a mid that gets no PUBACK within ``ack_timeout_s`` forces a
  reconnect (which re-sends it), so nothing waits forever.

All state here lives on the event loop; the paho thread only reports through
:class:`~edge_agent.uplink.client.LinkEvents` callbacks marshalled into the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from edge_agent.buffer import Buffer, OutboxRow, outbox
from edge_agent.uplink import payload
from edge_agent.uplink.client import LinkEvents, MqttLink, Will
from edge_agent.uplink.config import DrainOrder, MqttConfig, Transport
from edge_agent.uplink.drain import DrainQueue
from edge_agent.uplink.topics import TopicTemplates

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 1.0


class BrokerLink(Protocol):
    """What the uplink uses of its broker connection (``MqttLink``, or a fake in tests)."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start connecting in the background."""

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> tuple[int, int, int]:
        """Queue a QoS 1 publish: ``(generation, mid, rc)``."""

    def drop_connection(self) -> None:
        """Drop the current connection (it is re-established)."""

    async def close(self, timeout: float = 5.0) -> None:
        """Disconnect and stop."""


async def fetch_lanes(
    buffer: Buffer, queries: list[outbox.LaneQuery], *, discover: bool
) -> tuple[list[int] | None, list[list[OutboxRow]]]:
    """Run :func:`edge_agent.buffer.outbox.fetch_lanes` on the buffer's writer thread.

    One writer job per read-ahead top-up, FIFO with every other writer job.
    """
    return await buffer.fetch_outbox_lanes(queries, discover=discover)


class Uplink:
    """Publishes the buffer's outbox to the broker until stopped.

    Args:
        config: The ``[mqtt]`` section.
        buffer: An opened :class:`~edge_agent.buffer.Buffer`.
        agent_id: The agent id (in every envelope and the default client id).
        site: The site name (topic placeholder ``{site}``).
        clock: Wall clock for status timestamps (injectable).
        link: Builds the broker link from the uplink (its events receiver) and the
            will; default :class:`~edge_agent.uplink.client.MqttLink` (tests inject a fake).
    """

    def __init__(
        self,
        config: MqttConfig,
        buffer: Buffer,
        agent_id: str,
        site: str,
        *,
        clock: Callable[[], float] = time.time,
        link: Callable[[LinkEvents, Will], BrokerLink] | None = None,
    ) -> None:
        self.config = config
        self.buffer = buffer
        self.agent_id = agent_id
        self.site = site
        self._clock = clock
        self.topics = TopicTemplates.create(
            site=site, agent=agent_id, prefix_template=config.topic_prefix, templates=config.topics
        )
        will = Will(
            topic=self.topics.status(),
            online=lambda: payload.status(agent_id, "online", self._clock(), site=site),
            offline=lambda: payload.status(agent_id, "offline", self._clock(), site=site),
        )
        if link is None:
            self._link: BrokerLink = MqttLink(
                config, client_id=config.effective_client_id(agent_id), will=will, events=self
            )
        else:
            self._link = link(self, will)
        self._wake = asyncio.Event()
        self._connected = False
        self._generation = 0
        self._session_present = False
        # mid -> (seq, monotonic send time); only for the current generation.
        self._pending: dict[int, tuple[int, float]] = {}
        self._acked: list[int] = []
        # Read-ahead: rows fetched but not yet sent (per priority class), so a PUBACK
        # burst refills the window without waiting for a database round trip.
        self._queue = DrainQueue(live_mark=None)
        self._read_ahead = max(2 * config.max_in_flight, 64)
        self._status_mid: int | None = None
        self._status_acked = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()
        self.published = 0
        self.sent = 0
        self.rejected = 0
        self.connects = 0
        self.last_error: str | None = None

    # -- public --------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect and drain the outbox until :meth:`stop` (or cancellation)."""
        if self.config.transport is Transport.TLS and self.config.tls_insecure:
            log.warning(
                "MQTT TLS hostname verification is OFF (mqtt.tls_insecure = true): host=%s",
                self.config.host,
            )
        self._link.start(asyncio.get_running_loop())
        unsubscribe = self.buffer.on_publish(self._new_rows)
        try:
            while not self._stopping:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), HOUSEKEEPING_S)
                self._wake.clear()
                self._flush_acks()
                if self._connected and not self._stopping:
                    await self._fill()
                self._check_ack_timeout()
            await self._stopped.wait()
        finally:
            unsubscribe()
            if not self._stopped.is_set():
                # Cancelled without stop(): still close the connection and the thread.
                await self._shutdown(timeout=2.0)

    async def stop(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for in-flight PUBACKs, publish ``offline`` (retained), disconnect."""
        if self._stopped.is_set():
            return
        self._stopping = True
        self._wake.set()
        await self._shutdown(timeout=timeout)

    def state(self) -> dict[str, Any]:
        """Connection and delivery counters for health telemetry and ``status``."""
        return {
            "connected": self._connected,
            "backlog": self.buffer.backlog if self.buffer.is_open else None,
            "in_flight": len(self._pending),
            "published": self.published,
            "sent": self.sent,
            "rejected": self.rejected,
            "connects": self.connects,
            "session_present": self._session_present,
            "last_error": self.last_error,
        }

    # -- LinkEvents (called on the loop thread) -----------------------------------------
    def link_connected(self, generation: int, session_present: bool) -> None:
        """Start a new delivery round from the oldest unacknowledged row."""
        self._generation = generation
        self._connected = True
        self._session_present = session_present
        self.connects += 1
        self._pending.clear()
        mark: int | None = None
        if self.config.drain_order is DrainOrder.LIVE_FIRST:
            # The backlog: every seq that existed when the connection came up.
            mark = self.buffer.last_seq if self.buffer.is_open else 0
        self._queue = DrainQueue(live_mark=mark)
        self.last_error = None
        log.info(
            "MQTT connected: host=%s port=%d session_present=%s backlog=%s",
            self.config.host,
            self.config.port,
            session_present,
            self.buffer.backlog if self.buffer.is_open else "?",
        )
        self._wake.set()

    def link_disconnected(self, generation: int, reason: str) -> None:
        """Forget every pending mid of that connection: its rows stay in the outbox."""
        if generation != self._generation or not self._connected:
            return
        self._connected = False
        self._pending.clear()
        if not self._stopping:
            self.last_error = f"disconnected: {reason}"
            log.warning("MQTT connection lost, buffering: reason=%r", reason)
        self._status_acked.set()

    def link_acked(self, acks: list[tuple[int, int, str | None]]) -> None:
        """Resolve PUBACKs of the current connection into acknowledged seqs."""
        for generation, mid, failure in acks:
            if generation != self._generation:
                continue
            if mid == self._status_mid:
                self._status_acked.set()
                continue
            entry = self._pending.pop(mid, None)
            if entry is None:
                continue
            if failure is not None:
                self.rejected += 1
                self.last_error = f"publish rejected by broker: seq={entry[0]} reason={failure}"
                log.warning(
                    "MQTT publish rejected, kept in outbox: seq=%d reason=%r", entry[0], failure
                )
                continue
            self._acked.append(entry[0])
            self.published += 1
        self._wake.set()

    def link_error(self, message: str) -> None:
        """Log a connect failure once per distinct message (it is retried with backoff)."""
        if message != self.last_error:
            log.error(
                "MQTT connect failed, retrying: host=%s port=%d error=%s",
                self.config.host,
                self.config.port,
                message,
            )
        self.last_error = message

    # -- internals -----------------------------------------------------------------------
    def _new_rows(self) -> None:
        self._queue.wake()
        self._wake.set()

    def _flush_acks(self) -> None:
        # Not awaited: the writer runs jobs in order, so any later fetch sees the deletes.
        if self._acked and self.buffer.is_open:
            seqs, self._acked = self._acked, []
            self.buffer.ack_later(seqs)

    async def _fill(self) -> None:
        """Send rows until the in-flight window is full or the outbox is drained."""
        while self._connected and not self._stopping:
            slots = self.config.max_in_flight - len(self._pending)
            if slots <= 0:
                return
            generation = self._generation
            queue = self._queue
            await self._top_up(queue, slots)
            if generation != self._generation or not self._connected:
                return  # the connection changed while we read: start over on the new one
            batch = queue.take(slots)
            if not batch:
                return
            for i, row in enumerate(batch):
                if not self._send(row):
                    if generation == self._generation:
                        # Not sent on this connection: keep the rest for the next attempt.
                        queue.put_back(batch[i:])
                    return

    async def _top_up(self, queue: DrainQueue, slots: int) -> None:
        """Read more rows for every lane holding fewer than ``slots`` (one writer job)."""
        discover = queue.discovery_due
        queries = queue.queries(slots, self._read_ahead)
        if not queries and not discover:
            return
        queue.discovery_due = False
        epoch = queue.epoch
        try:
            found, results = await fetch_lanes(self.buffer, queries, discover=discover)
        except BaseException:
            queue.discovery_due = queue.discovery_due or discover  # not done: retry next time
            raise
        if queue is not self._queue:
            return  # a new connection started meanwhile: its queue starts from scratch
        queue.absorb(queries, results, epoch)
        if found is None:
            return
        queue.mark_absent(found, epoch)
        if queue.add_classes(found):
            # Classes seen for the first time: read them before choosing what to send.
            queries = queue.queries(slots, self._read_ahead)
            epoch = queue.epoch
            _found, results = await fetch_lanes(self.buffer, queries, discover=False)
            if queue is self._queue:
                queue.absorb(queries, results, epoch)

    def _send(self, row: OutboxRow) -> bool:
        body = payload.envelope(row, self.agent_id)
        generation, mid, rc = self._link.publish(row.topic, body, retain=row.retain)
        if generation != self._generation or rc == mqtt.MQTT_ERR_QUEUE_SIZE or mid < 0:
            return False
        # rc NO_CONN: the connection just dropped; the disconnect event clears this entry.
        self._pending[mid] = (row.seq, time.monotonic())
        self.sent += 1
        return True

    def _check_ack_timeout(self) -> None:
        if not self._connected or not self._pending:
            return
        oldest = min(sent for _seq, sent in self._pending.values())
        if time.monotonic() - oldest > self.config.ack_timeout_s:
            self.last_error = f"no PUBACK within {self.config.ack_timeout_s} s; reconnecting"
            log.warning("MQTT PUBACK timeout, reconnecting: in_flight=%d", len(self._pending))
            self._link.drop_connection()

    async def _shutdown(self, *, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._pending and self._connected and loop.time() < deadline:
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.01, deadline - loop.time()))
        try:
            self._flush_acks()
        except Exception:
            # Nothing is lost (the rows stay in the outbox and are re-sent), but say so.
            log.exception("Could not record acknowledgements at stop; those rows will be re-sent")
        if self._connected:
            self._status_acked.clear()
            generation, mid, rc = self._link.publish(
                self.topics.status(),
                payload.status(self.agent_id, "offline", self._clock(), site=self.site),
                retain=True,
            )
            if rc == mqtt.MQTT_ERR_SUCCESS and generation == self._generation:
                self._status_mid = mid
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        self._status_acked.wait(), max(0.1, deadline - loop.time())
                    )
        await self._link.close()
        self._connected = False
        self._pending.clear()
        self._stopped.set()
        self._wake.set()
