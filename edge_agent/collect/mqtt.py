"""The collector's MQTT 5 session: persistent, QoS 1, acknowledged by hand after the commit.

Threading model: paho's own network thread (``loop_start``), which reconnects by itself
with backoff (the asyncio socket hooks never reconnect, library notes §3). ``on_message``
only appends a :class:`Delivery` to a queue; the collector's thread stores a batch,
commits, then calls :meth:`Subscriber.ack`, which queues the PUBACK on paho's outgoing
packet deque (paho 2.2: ``Client(manual_ack=True)`` and ``client.ack(mid, qos)``).

Session: ``clean_start=False`` with a ``SessionExpiryInterval``, a stable client id per
instance, subscriptions at QoS 1; with ``shared_group`` the filters are
``$share/GROUP/...`` so the broker spreads messages over the instances of the group. The
broker keeps what was not acknowledged and re-sends it on the next connection of the same
client id (the collector drops the copy it already stored as a counted duplicate).

Acks in order: PUBACKs go out in the order the messages were received (MQTT 5
§4.6), because batches are taken in arrival order and acknowledged whole. A delivery
received on an earlier connection is not acknowledged on the next one: the broker
re-sends it, and the re-sent copy is acknowledged instead.

The queue is bounded by the protocol: the broker sends at most ``receive_maximum``
unacknowledged QoS 1 messages (CONNECT property ``ReceiveMaximum``).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.collect.config import BrokerConfig, Transport, read_secret

log = logging.getLogger("edge_agent.collect.mqtt")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One received message and what is needed to acknowledge it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # connection it arrived on


class Subscriber:
    """A paho client subscribed to the collector's topic filters."""

    def __init__(self, cfg: BrokerConfig, inbox: queue.SimpleQueue[Delivery]) -> None:
        self.cfg = cfg
        self.inbox = inbox
        self._lock = threading.Lock()
        self.generation = 0
        self.connected = False
        self.subscribed = threading.Event()
        self.connects = 0
        self.session_present = False
        self.last_error = ""
        self.acks_skipped = 0
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(
            min_delay=max(1, round(cfg.reconnect_min_s)), max_delay=round(cfg.reconnect_max_s)
        )
        if cfg.transport is Transport.TLS:
            client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
            )
            if cfg.tls_insecure:
                log.warning("TLS hostname verification is off (mqtt.tls_insecure = true)")
                client.tls_insecure_set(True)
        password = read_secret(cfg.password_env, cfg.password_file, "mqtt.password")
        if cfg.username or password is not None:
            client.username_pw_set(cfg.username or None, password)
        self.client = client

    # -- paho callbacks (network thread) -----------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.error("Broker refused the connection reason=%s", reason)
            return
        with self._lock:
            self.generation += 1
            self.connected = True
            self.connects += 1
            self.session_present = bool(getattr(flags, "session_present", False))
        self.last_error = ""
        log.info(
            "Connected to the broker host=%s port=%d session_present=%s",
            self.cfg.host,
            self.cfg.port,
            self.session_present,
        )
        client.subscribe([(t, 1) for t in self.cfg.subscriptions()])

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._lock:
            was = self.connected
            self.connected = False
            self.subscribed.clear()
        if was:
            self.last_error = f"disconnected: {reason}"
            log.warning("Disconnected from the broker reason=%s", reason)

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            self.last_error = f"subscription refused: {', '.join(failed)}"
            log.error("Broker refused a subscription reasons=%s", ",".join(failed))
        else:
            log.info("Subscribed topics=%s", ",".join(self.cfg.subscriptions()))
        self.subscribed.set()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        raw_topic = message._topic  # bytes; .topic raises on invalid UTF-8
        topic = raw_topic.decode("utf-8", "replace") if isinstance(raw_topic, bytes) else ""
        self.inbox.put(
            Delivery(topic, bytes(message.payload), message.mid, message.qos, self.generation)
        )

    # -- collector thread ------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (paho retries until the broker answers)."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        props.ReceiveMaximum = self.cfg.receive_maximum
        self.client.connect_async(
            self.cfg.host,
            self.cfg.port,
            keepalive=self.cfg.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()

    def ack(self, delivery: Delivery) -> bool:
        """Send the PUBACK of a stored delivery (False when its connection is gone)."""
        if delivery.qos == 0:
            return True
        with self._lock:
            current = self.connected and delivery.generation == self.generation
        if not current:
            self.acks_skipped += 1
            return False
        self.client.ack(delivery.mid, delivery.qos)
        return True

    def stop(self) -> None:
        """Disconnect (the session stays on the broker) and stop paho's thread."""
        self.client.disconnect()
        self.client.loop_stop()
