"""paho-mqtt driven from asyncio: one network thread, every callback marshalled into the loop.

Threading model (conventions.md item 10, the second option): paho's network I/O
runs on **one dedicated thread owned by this module** (like ``loop_start()``,
but with our own reconnect loop so the backoff has jitter and every connection
starts from a fresh client). Each paho callback does nothing but hand its
arguments to the event loop with ``loop.call_soon_threadsafe`` (PUBACKs are
batched: one wake-up per burst). All outbox state (pending mids, cursors,
counters) lives in :mod:`.publisher` on the event loop; this module keeps none.

Why a fresh ``paho.Client`` per connection: paho re-sends its RAM copy of
unacknowledged QoS 1 messages after a reconnect. Our outbox re-sends them too,
from SQLite, so a reused client would double every in-flight message. Dropping
the client on disconnect leaves the outbox as the only source of truth.

Other details: ``publish()`` is called from the event-loop thread; a no-op
``on_socket_register_write`` keeps paho from writing the socket from that thread
(the network thread's ``select`` is woken through paho's socket pair instead).
The birth message (retained ``online``) is queued inside ``on_connect``, before
any outbox row; the Last Will (retained ``offline``) is registered before
``connect``. Credentials are read at connect time and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.backoff import Backoff
from edge_agent.errors import UplinkError
from edge_agent.uplink.config import MqttConfig, MqttProtocol, SessionMode, Transport

log = logging.getLogger(__name__)

LOOP_TIMEOUT_S = 0.2
STOP_FLUSH_S = 2.0


class LinkEvents(Protocol):
    """What the link reports; every method is called on the event loop thread."""

    def link_connected(self, generation: int, session_present: bool) -> None:
        """CONNACK accepted; ``generation`` identifies this connection."""

    def link_disconnected(self, generation: int, reason: str) -> None:
        """The connection ``generation`` ended (paho state is discarded)."""

    def link_acked(self, acks: list[tuple[int, int, str | None]]) -> None:
        """PUBACKs as ``(generation, mid, failure reason or None)``."""

    def link_error(self, message: str) -> None:
        """A connect attempt failed (refused, TLS, auth); retried with backoff."""


@dataclass(frozen=True, slots=True)
class Will:
    """Retained status messages: ``online`` published on connect, ``offline`` as Last Will."""

    topic: str
    online: Callable[[], bytes]
    offline: Callable[[], bytes]


def read_password(config: MqttConfig) -> str | None:
    """The password from ``password_env`` or ``password_file`` (None when not configured).

    Raises:
        UplinkError: The variable is unset or the file unreadable (the secret is never quoted).
    """
    if config.password_env:
        value = os.environ.get(config.password_env)
        if value is None:
            raise UplinkError(
                f"environment variable {config.password_env} (mqtt.password_env) is not set"
            )
        return value
    if config.password_file is not None:
        try:
            return config.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise UplinkError(
                f"cannot read mqtt.password_file {config.password_file}: {exc.strerror}"
            ) from exc
    return None


def describe_error(exc: BaseException) -> str:
    """A one-line operator-facing description of a connect failure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
        return f"TLS certificate verification failed: {detail}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "connect timed out"
    if isinstance(exc, UplinkError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{type(exc).__name__}: {exc.strerror or exc}{where}"
    return f"{type(exc).__name__}: {exc}"


class MqttLink:
    """Owns the paho client(s) and the network thread of one broker connection."""

    def __init__(
        self, config: MqttConfig, *, client_id: str, will: Will, events: LinkEvents
    ) -> None:
        self._config = config
        self._client_id = client_id
        self._will = will
        self._events = events
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._generation = 0
        self._acks: list[tuple[int, int, str | None]] = []
        self._reason = ""
        self._backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)

    # -- event-loop side -------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the network thread (connects in the background)."""
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="mqtt-network", daemon=True)
        self._thread.start()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> tuple[int, int, int]:
        """Queue a QoS 1 publish on the current connection: ``(generation, mid, rc)``.

        ``rc`` is paho's: 0 queued for sending, 4 no connection (the row stays in the
        outbox), 15 paho's bounded queue is full.
        """
        with self._lock:
            client, generation = self._client, self._generation
        if client is None:
            return generation, -1, int(mqtt.MQTT_ERR_NO_CONN)
        info = client.publish(topic, payload, qos=1, retain=retain)
        return generation, int(info.mid), int(info.rc)

    def drop_connection(self) -> None:
        """Close the current connection (the thread reconnects), e.g. after an ack timeout."""
        with self._lock:
            client = self._client
        if client is not None and client.is_connected():
            client.disconnect()

    async def close(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly and join the network thread (bounded)."""
        self.drop_connection()
        self._stop.set()
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join, timeout)
            if thread.is_alive():
                log.error("MQTT network thread did not stop in time: timeout_s=%s", timeout)

    # -- network thread ------------------------------------------------------------------
    def _marshal(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closed while we were shutting down
            loop.call_soon_threadsafe(fn, *args)

    def _make_client(self, generation: int) -> mqtt.Client:
        cfg = self._config
        v5 = cfg.protocol is MqttProtocol.V5
        if v5:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=mqtt.MQTTv5
            )
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self._client_id,
                protocol=mqtt.MQTTv311,
                clean_session=cfg.session is SessionMode.CLEAN,
            )
        # Bounded RAM: in flight + queued never exceeds our window plus status messages.
        client.max_inflight_messages_set(cfg.max_in_flight)
        client.max_queued_messages_set(cfg.max_in_flight + 4)
        client.connect_timeout = cfg.connect_timeout_s
        client.enable_logger(logging.getLogger("paho"))
        password = read_password(cfg)
        if cfg.username:
            client.username_pw_set(cfg.username, password)
        if cfg.transport is Transport.TLS:
            client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            if cfg.tls_insecure:
                client.tls_insecure_set(True)
        client.will_set(self._will.topic, self._will.offline(), qos=1, retain=True)
        client.on_socket_register_write = _no_op_register_write
        client.on_connect = lambda c, _u, flags, rc, _p: self._on_connect(c, generation, flags, rc)
        client.on_disconnect = lambda _c, _u, _f, rc, _p: self._on_disconnect(generation, rc)
        client.on_publish = lambda _c, _u, mid, rc, _p: self._on_publish(generation, mid, rc)
        return client

    def _connect(self, client: mqtt.Client) -> None:
        cfg = self._config
        if cfg.protocol is MqttProtocol.V5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            persistent = cfg.session is SessionMode.PERSISTENT
            if persistent:
                props.SessionExpiryInterval = cfg.session_expiry_s
            client.connect(
                cfg.host,
                cfg.port,
                keepalive=cfg.keepalive_s,
                clean_start=not persistent,
                properties=props,
            )
        else:
            client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s)

    def _on_connect(self, client: mqtt.Client, generation: int, flags: Any, rc: Any) -> None:
        if rc.is_failure:
            self._marshal(self._events.link_error, f"broker refused the connection: {rc}")
            client.disconnect()
            return
        self._backoff.reset()
        # Birth before any outbox row: queued here, on the network thread, before the loop hears.
        client.publish(self._will.topic, self._will.online(), qos=1, retain=True)
        with self._lock:
            self._client = client
        self._marshal(
            self._events.link_connected, generation, bool(getattr(flags, "session_present", False))
        )

    def _on_disconnect(self, generation: int, rc: Any) -> None:
        # Reported once, by the thread loop after paho's loop returns (paho may call this twice).
        with self._lock:
            if self._generation == generation:
                self._client = None
                self._reason = str(rc)

    def _on_publish(self, generation: int, mid: int, rc: Any) -> None:
        failure = str(rc) if getattr(rc, "is_failure", False) else None
        with self._lock:
            first = not self._acks
            self._acks.append((generation, mid, failure))
        if first:
            self._marshal(self._drain_acks)

    def _drain_acks(self) -> None:
        with self._lock:
            acks, self._acks = self._acks, []
        if acks:
            self._events.link_acked(acks)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._generation += 1
                generation = self._generation
            try:
                client = self._make_client(generation)
                self._connect(client)
            except Exception as exc:  # every connect failure is retried and reported
                self._marshal(self._events.link_error, describe_error(exc))
                self._stop.wait(self._backoff.next_delay())
                continue
            rc = mqtt.MQTT_ERR_SUCCESS
            stop_deadline: float | None = None
            while client.socket() is not None:  # paho logs an ERROR for loop() without socket
                rc = client.loop(timeout=LOOP_TIMEOUT_S)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                if self._stop.is_set():
                    # Keep looping briefly so a queued DISCONNECT actually leaves the socket.
                    now = time.monotonic()
                    if stop_deadline is None:
                        stop_deadline = now + STOP_FLUSH_S
                    elif now > stop_deadline or not client.is_connected():
                        break
            with self._lock:
                if self._client is client:
                    self._client = None
            with self._lock:
                reason, self._reason = self._reason or f"connection lost (rc={rc})", ""
            self._marshal(self._events.link_disconnected, generation, reason)
            if not self._stop.is_set():
                self._stop.wait(self._backoff.next_delay())


def _no_op_register_write(_client: Any, _userdata: Any, _sock: Any) -> None:
    """Registered so paho never writes the socket from the publishing (event-loop) thread."""
