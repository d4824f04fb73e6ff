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
  bytes, same ``seq``); the consumer de-duplicates on ``(agent, epoch, seq)`` with
  a set (not "highest seen": classes overtake each other). A ``seq`` is never
  reused within an epoch, even when the database is lost (see
  :mod:`edge_agent.buffer.recovery`). A gap in ``seq`` that stays after the backlog
  is drained means data was evicted under the disk budget (counted in the
  buffer's stats) or lost with a damaged database (announced by a ``gap``
  message, published before anything else at start) - it is never silent.
* **Clean stop.** :meth:`Uplink.stop` keeps sending the outbox (the records and
  telemetry the agent stored on its way out) and waits for the PUBACKs, until
  the outbox is empty or ``timeout`` passed, then publishes ``offline``; what is
  left is sent at the next start.
* **Bounded.** At most ``max_in_flight`` publishes are outstanding; paho's RAM
  queue is bounded to the same size. The pending mid map is cleared on every
  disconnect, and a mid that gets no PUBACK within ``ack_timeout_s`` forces a
  reconnect (which re-sends it), so nothing waits forever.

All state here lives on the event loop; the paho thread only reports through
:class:`~edge_agent.uplink.client.LinkEvents` callbacks marshalled into the loop.

With ``payload = "sparkplug_b"`` the same outbox, window, PUBACK rule and drain
order apply; the rows are encoded by a Sparkplug Edge Node session
(:class:`~edge_agent.uplink.sparkplug.session.EdgeNode`) instead of the JSON
envelope, after its birth certificates. Its hooks here are marked ``Sparkplug``;
the JSON path does not go through them.

Size: over 400 lines because the outbox-on-PUBACK state (in-flight mids, cursors,
priorities, drain, stop) is one piece of state every callback mutates; the pure parts
live in drain.py and topics.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import paho.mqtt.client as mqtt

from edge_agent import logtext
from edge_agent.buffer import Buffer, OutboxRow, outbox
from edge_agent.errors import StorageFull
from edge_agent.uplink import payload
from edge_agent.uplink.client import LinkEvents, MqttLink, Will
from edge_agent.uplink.config import DrainOrder, MqttConfig, PayloadFormat, Transport
from edge_agent.uplink.drain import DrainQueue
from edge_agent.uplink.topics import TopicTemplates

if TYPE_CHECKING:
    from edge_agent.config import AgentConfig
    from edge_agent.model import Reading
    from edge_agent.uplink.sparkplug.config import SparkplugConfig
    from edge_agent.uplink.sparkplug.session import EdgeNode

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 1.0


class BrokerLink(Protocol):
    """What the uplink uses of its broker connection (``MqttLink``, or a fake in tests)."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start connecting in the background."""

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        qos: int = 1,
        generation: int | None = None,
    ) -> tuple[int, int, int]:
        """Queue a publish on the current connection: ``(generation, mid, rc)``."""

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
        commands: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.config = config
        self.buffer = buffer
        self.agent_id = agent_id
        self.site = site
        self._clock = clock
        self.topics = TopicTemplates.create(
            site=site, agent=agent_id, prefix_template=config.topic_prefix, templates=config.topics
        )
        # Sparkplug: the Edge Node session when payload = "sparkplug_b" (None for JSON).
        self._spb: EdgeNode | None = None
        self._commands: Callable[[str, bytes], None] | None = None
        subscriptions: tuple[str, ...] = ()
        if config.payload is PayloadFormat.SPARKPLUG_B and config.sparkplug is not None:
            self._spb = _edge_node(config.sparkplug, buffer, agent_id, clock)
            spb = self._spb
            will = Will(
                topic=spb.topic("NDEATH"),
                online=None,
                offline=spb.will,
                qos=1,
                retain=False,
                accepted=spb.accepted,
            )
            subscriptions = spb.subscriptions()
        else:
            # Commands (acknowledgements of stops): the agent's own command topic only;
            # the broker's ACL decides who may publish there.
            self._commands = commands
            if commands is not None:
                subscriptions = (self.topics.command(),)
            will = Will(
                topic=self.topics.status(),
                online=lambda: payload.status(
                    agent_id, "online", self._clock(), site=site, epoch=buffer.epoch
                ),
                offline=lambda: payload.status(
                    agent_id, "offline", self._clock(), site=site, epoch=buffer.epoch
                ),
            )
        if link is None:
            self._link: BrokerLink = MqttLink(
                config,
                client_id=config.effective_client_id(agent_id),
                will=will,
                events=self,
                subscriptions=subscriptions,
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
        self._draining = False  # stopping, but still sending the outbox (bounded)
        self._fill_lock = asyncio.Lock()
        self._stopped = asyncio.Event()
        self._gaps_pending = True
        self._gap_error_logged = False
        self.published = 0
        self.sent = 0
        self.rejected = 0
        self.skipped = 0
        self.connects = 0
        self.last_error: str | None = None
        # A backlog being sent after a (re)connect: (monotonic start, messages waiting then).
        self._catching_up: tuple[float, int] | None = None

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
                if self._gaps_pending and self.buffer.is_open:
                    await self._publish_gaps()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), HOUSEKEEPING_S)
                self._wake.clear()
                self._flush_acks()
                if self._connected and not self._stopping:
                    await self._fill()
                self._check_ack_timeout()
                self._check_caught_up()
            await self._stopped.wait()
        finally:
            unsubscribe()
            if not self._stopped.is_set():
                # Cancelled without stop(): still close the connection and the thread.
                await self._shutdown(timeout=2.0)

    async def stop(self, timeout: float = 5.0) -> None:
        """Send the outbox and wait for its PUBACKs (bounded), publish ``offline``, disconnect."""
        if self._stopped.is_set():
            return
        self._stopping = True
        self._wake.set()
        await self._shutdown(timeout=timeout)

    def describe(
        self, config: AgentConfig, tags: Mapping[str, Mapping[str, Reading]] | None = None
    ) -> None:
        """Tell the uplink what the agent reports (Sparkplug: metric catalog; JSON: no-op).

        Call after construction and after every configuration reload. ``tags`` is the
        runtime's latest reading per device and tag, read when a birth certificate
        announces current values.
        """
        spb = self._spb
        if spb is None or config.mqtt.sparkplug is None:
            return
        from edge_agent import __version__
        from edge_agent.uplink.sparkplug.catalog import build_catalog

        catalog = build_catalog(config, config.mqtt.sparkplug, version=__version__)
        spb.describe(catalog, None if tags is None else _latest_reader(tags))
        self._wake.set()

    def device_comms(self, device: str, up: bool) -> None:
        """A device's communication went up or down (Sparkplug: DBIRTH / DDEATH)."""
        if self._spb is not None:
            self._spb.device_comms(device, up)
            self._wake.set()

    def state(self) -> dict[str, Any]:
        """Connection and delivery counters for health telemetry and ``status``."""
        extra: dict[str, Any] = {}
        if self._spb is not None:
            extra = {"skipped": self.skipped, "sparkplug": self._spb.state()}
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
            **extra,
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
        backlog = self.buffer.backlog if self.buffer.is_open else 0
        if self._spb is not None:
            self._spb.on_connected()
        log.info(
            "MQTT connected host=%s port=%d session_present=%s backlog=%d",
            self.config.host,
            self.config.port,
            session_present,
            backlog,
        )
        self._catching_up = (time.monotonic(), backlog) if backlog > self._caught_up_at() else None
        self._wake.set()

    def link_disconnected(self, generation: int, reason: str) -> None:
        """Forget every pending mid of that connection: its rows stay in the outbox."""
        if generation != self._generation or not self._connected:
            return
        self._connected = False
        self._pending.clear()
        if self._spb is not None:
            self._spb.on_disconnected()
        if not self._stopping:
            self.last_error = f"disconnected: {reason}"
            self._catching_up = None
            log.warning(
                "MQTT connection lost, buffering messages until it is back host=%s reason=%s",
                self.config.host,
                reason,
            )
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
            if entry is None or entry[0] < 0:
                continue  # not ours, or a Sparkplug birth/death (no outbox row)
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

    def link_message(self, generation: int, topic: str, body: bytes) -> None:
        """Sparkplug: NCMD / STATE from the broker; JSON: the agent's command topic."""
        if self._spb is not None and generation == self._generation and self._connected:
            self._spb.on_message(topic, body)
            self._wake.set()
        elif self._spb is None and self._commands is not None:
            self._commands(topic, body)

    # -- Sparkplug sender (called by the EdgeNode on the loop) -------------------------
    def send_control(self, topic: str, body: bytes, qos: int) -> bool:
        """Publish a Sparkplug birth/death; it takes a window slot until acknowledged."""
        generation, mid, rc = self._link.publish(topic, body, qos=qos, generation=self._generation)
        if generation != self._generation or rc != mqtt.MQTT_ERR_SUCCESS or mid < 0:
            return False
        self._pending[mid] = (-1, time.monotonic())
        return True

    def send_row(self, row: OutboxRow, topic: str, body: bytes, qos: int) -> bool:
        """Publish a row's Sparkplug message (the row is deleted on its acknowledgement)."""
        generation, mid, rc = self._link.publish(topic, body, qos=qos, generation=self._generation)
        if generation != self._generation or rc != mqtt.MQTT_ERR_SUCCESS or mid < 0:
            return False
        self._pending[mid] = (row.seq, time.monotonic())
        self.sent += 1
        return True

    def skip_row(self, row: OutboxRow) -> None:
        """Acknowledge a row that has no Sparkplug form (counted in ``skipped``)."""
        self._acked.append(row.seq)
        self.skipped += 1

    def free_slots(self) -> int:
        """Publishes that fit in the in-flight window now."""
        return self.config.max_in_flight - len(self._pending)

    # -- internals -----------------------------------------------------------------------
    async def _publish_gaps(self) -> None:
        """Queue the buffer's pending gap reports (messages lost with a database) once."""
        try:
            seqs = await self.buffer.publish_gaps(self.topics.gap())
        except StorageFull:
            return  # kept in the database; tried again at the next housekeeping round
        except Exception:
            # Kept in the database as well; an uplink that stops over it would lose more.
            if not self._gap_error_logged:
                log.exception("Could not queue the gap report; retrying")
                self._gap_error_logged = True
            return
        self._gaps_pending = False
        if seqs:
            log.info("Gap report queued for publishing: seqs=%s", seqs)

    def _caught_up_at(self) -> int:
        """Backlog size that counts as live: what one in-flight window carries."""
        return self.config.max_in_flight

    def _check_caught_up(self) -> None:
        """Log once when the backlog found at connect has been sent (the backlog's end line)."""
        if self._catching_up is None or not self._connected or not self.buffer.is_open:
            return
        if self.buffer.backlog > self._caught_up_at():
            return
        started, count = self._catching_up
        self._catching_up = None
        log.info(
            "MQTT backlog sent, publishing live again messages=%d took=%s",
            count,
            logtext.duration(time.monotonic() - started),
        )

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
        async with self._fill_lock:  # the run loop's and the stop's never interleave
            await self._fill_window()

    async def _fill_window(self) -> None:
        while self._connected and (not self._stopping or self._draining):
            if self._spb is not None and not self._spb_ready():
                return
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

    def _spb_ready(self) -> bool:
        """Sparkplug: births/deaths due before rows; leave when the primary host went away."""
        spb = self._spb
        if spb is None:
            return True
        if spb.leaving:
            if spb.leave(self):
                self._link.drop_connection()
            return False
        last = self.buffer.last_seq if self.buffer.is_open else 0
        return spb.pump(self, last)

    def _send(self, row: OutboxRow) -> bool:
        if self._spb is not None:
            from edge_agent.uplink.sparkplug.session import RowResult

            result = self._spb.send_row(self, row)
            if result is RowResult.RETRY and self._spb.ready is False:
                self._wake.set()  # a rebirth is due first: come back at once
            return result is not RowResult.RETRY
        body = payload.envelope(row, self.agent_id, self.buffer.epoch)
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
        # Send what the outbox holds (the records of the last report, the last telemetry
        # batch) and wait for its PUBACKs, until empty or the deadline.
        self._draining = True
        try:
            while self._connected and loop.time() < deadline:
                self._wake.clear()
                if self.buffer.is_open:
                    self._flush_acks()
                    await self._fill()
                if not self._pending:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.01, deadline - loop.time()))
        except Exception:
            log.exception("Could not send the outbox at stop; the rows are sent at the next start")
        finally:
            self._draining = False
        try:
            if self.buffer.is_open:
                seqs, self._acked = self._acked, []
                # Awaited even when empty: the writer runs jobs in order, so every earlier
                # ack is recorded (and the backlog figure right) before the final status.
                await self.buffer.ack(seqs)
        except Exception:
            # Nothing is lost (the rows stay in the outbox and are re-sent), but say so.
            log.exception("Could not record acknowledgements at stop; those rows will be re-sent")
        if self._connected:
            self._status_acked.clear()
            if self._spb is not None:
                # Sparkplug: an explicit NDEATH (the Will's bdSeq) before the DISCONNECT.
                from edge_agent.uplink.sparkplug import codec

                bdseq = self._spb.bdseq.current
                topic = self._spb.topic("NDEATH")
                body = codec.ndeath(bdseq if bdseq is not None else 0, round(self._clock() * 1000))
                retain = False
            else:
                topic = self.topics.status()
                body = payload.status(
                    self.agent_id, "offline", self._clock(), site=self.site, epoch=self.buffer.epoch
                )
                retain = True
            generation, mid, rc = self._link.publish(topic, body, retain=retain)
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


def _edge_node(
    sparkplug: SparkplugConfig, buffer: Buffer, agent_id: str, clock: Callable[[], float]
) -> EdgeNode:
    """Sparkplug: the Edge Node session; its bdSeq file sits next to the buffer database."""
    from edge_agent.uplink.sparkplug.bdseq import BdSeq
    from edge_agent.uplink.sparkplug.session import EdgeNode

    db = Path(buffer.config.path)
    bdseq = BdSeq(db.with_name(db.name + ".sparkplug.json"))
    return EdgeNode(sparkplug, agent_id, bdseq, clock=clock)


def _latest_reader(
    tags: Mapping[str, Mapping[str, Reading]],
) -> Callable[[str, str], tuple[Any, float, bool] | None]:
    """Sparkplug: ``latest(device, tag)`` over the runtime's latest readings (read at birth)."""
    from edge_agent.model import Quality

    def latest(device: str, tag: str) -> tuple[Any, float, bool] | None:
        reading = tags.get(device, {}).get(tag)
        if reading is None:
            return None
        return reading.value, reading.ts, reading.quality is Quality.GOOD

    return latest
