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

Reconnecting (:class:`Reconnect`): after a connection that was up drops, the
first retry comes after ``reconnect_min_s`` (jittered). While the broker does not
accept connections at all (refused, unreachable, connect timeout, closed before
CONNACK, CONNACK "server unavailable") it is probed at most ``probe_interval_s``
apart, whatever the outage's length, so a returning broker is found within that
time; each delay is drawn between half and all of its bound, so a fleet's
attempts spread over the interval instead of arriving in the same second. When
the broker itself refuses the client (credentials, authorisation, TLS, "server
busy", rate limits), the delay doubles up to ``reconnect_max_s``: hammering would
not help, and would add load where the broker asked for less.

Other details: ``publish()`` is called from the event-loop thread; a no-op
``on_socket_register_write`` keeps paho from writing the socket from that thread
(the network thread's ``select`` is woken through paho's socket pair instead).
The birth message (retained ``online``) is queued inside ``on_connect``, before
any outbox row; the Last Will (retained ``offline``) is registered before
``connect``. A dialect without a status birth (Sparkplug: its NBIRTH is sent by
the publisher) leaves ``Will.online`` unset; its subscriptions are sent in
``on_connect`` before the loop hears of the connection, and incoming messages
are marshalled like every other callback. Credentials are read at connect time
and never logged.

Size: over 400 lines because the paho thread bridge and the reconnect policy act on the
same connection lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.errors import UplinkError
from edge_agent.uplink.config import MqttConfig, MqttProtocol, SessionMode, Transport

log = logging.getLogger(__name__)

LOOP_TIMEOUT_S = 0.2
STOP_FLUSH_S = 2.0
# CONNACK reason codes that mean "not up yet" rather than "not you": probe again soon.
_CONNACK_PROBE = frozenset({0x88})  # Server unavailable (MQTT 3.1.1 code 3 maps here)


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

    def link_message(self, generation: int, topic: str, payload: bytes) -> None:
        """A message arrived on one of the link's subscriptions."""


@dataclass(frozen=True, slots=True)
class Will:
    """Status messages: ``online`` published on connect (if set), ``offline`` as Last Will.

    ``offline`` is called once per connection attempt, before ``connect`` (a Sparkplug
    NDEATH takes its ``bdSeq`` there); ``accepted`` (if set) is called on the network
    thread when the broker accepted that connection, before anything else happens on it.
    """

    topic: str
    online: Callable[[], bytes] | None
    offline: Callable[[], bytes]
    qos: int = 1
    retain: bool = True
    accepted: Callable[[], None] | None = None


@dataclass(slots=True)
class Reconnect:
    """When to try the broker again (see the module docstring).

    Args:
        min_s: First retry after a drop, and the start of the doubling.
        max_s: Longest delay while the broker refuses this client.
        probe_s: Longest delay while the broker does not accept connections at all.
        rng: Random source of the jitter (injectable for tests).
    """

    min_s: float
    max_s: float
    probe_s: float
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self, *, unreachable: bool) -> float:
        """Seconds to wait before the next attempt, drawn in [bound/2, bound].

        ``unreachable``: the last attempt found no broker (as opposed to a broker
        that refused this client); the bound is then at most ``probe_s``.
        """
        bound = min(self.max_s, self.min_s * 2.0**self.attempt)
        if bound < self.max_s:
            self.attempt += 1  # not past the cap: 2.0**attempt overflows after ~1,000 tries
        if unreachable:
            bound = min(bound, self.probe_s)
        return self.rng.uniform(bound / 2, bound)

    def reset(self) -> None:
        """A connection was accepted: the next drop starts again at ``min_s``."""
        self.attempt = 0


def unreachable(exc: BaseException) -> bool:
    """Whether a connect failure means "no broker there" rather than "broker said no"."""
    if isinstance(exc, ssl.SSLError | UplinkError):
        return False
    return isinstance(exc, OSError)  # refused, reset, unreachable, timeout


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


def check_tls_files(config: MqttConfig) -> None:
    """Fail with the key and the path when a TLS file cannot be read.

    ``ssl`` reports a missing CA file as a bare ``[Errno 2] No such file or
    directory`` without the name; the technician needs to know which file.

    Raises:
        UplinkError: ``mqtt.<key>: <path> does not exist`` (or is unreadable).
    """
    from edge_agent.preflight import file_problem

    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(config, key)
        if path is not None and (problem := file_problem(path)) is not None:
            raise UplinkError(f"mqtt.{key}: {problem}")


def _from_broker(flags: Any) -> bool:
    return bool(getattr(flags, "is_disconnect_packet_from_server", False))


def describe_disconnect(reason_code: Any, *, from_broker: bool) -> str:
    """Why a connection ended, in words a technician can act on.

    paho reports a socket closed without a DISCONNECT packet (a broker stopped
    cleanly under MQTT 3.1.1, a restarted broker, a cut cable) as reason code
    "Unspecified error"; that says nothing, so it is told as what it is.

    Args:
        reason_code: paho's ``ReasonCode`` (or its text).
        from_broker: Whether the broker sent a DISCONNECT packet (MQTT 5).
    """
    text = str(reason_code)
    if from_broker:
        if text in ("Server shutting down", "Success", "Normal disconnection"):
            return f"the broker closed the connection ({text.lower()})"
        return f"the broker disconnected us: {text}"
    if text == "Keep alive timeout":
        return "no answer from the broker within the keepalive time (network or broker stalled)"
    if text == "Success":  # paho's word for a disconnect we asked for
        return "disconnected by the agent"
    if text == "Unspecified error":
        return "connection closed by the broker or the network (broker stopped or restarted?)"
    return text


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
        self,
        config: MqttConfig,
        *,
        client_id: str,
        will: Will,
        events: LinkEvents,
        subscriptions: tuple[str, ...] = (),
    ) -> None:
        self._config = config
        self._client_id = client_id
        self._will = will
        self._events = events
        self._subscriptions = subscriptions
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._generation = 0
        self._acks: list[tuple[int, int, str | None]] = []
        self._reason = ""
        self._refused = False  # the broker answered CONNACK with a refusal
        self._reconnect = Reconnect(
            config.reconnect_min_s, config.reconnect_max_s, config.probe_interval_s
        )

    # -- event-loop side -------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the network thread (connects in the background)."""
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="mqtt-network", daemon=True)
        self._thread.start()

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        qos: int = 1,
        generation: int | None = None,
    ) -> tuple[int, int, int]:
        """Queue a publish on the current connection: ``(generation, mid, rc)``.

        ``rc`` is paho's: 0 queued for sending, 4 no connection (the row stays in the
        outbox), 15 paho's bounded queue is full. With ``generation``, nothing is sent
        unless that connection is the current one (rc 4 otherwise). A QoS 0 message is
        reported through ``link_acked`` once paho has written it to the socket.
        """
        with self._lock:
            client, current = self._client, self._generation
        if client is None or (generation is not None and generation != current):
            return current, -1, int(mqtt.MQTT_ERR_NO_CONN)
        info = client.publish(topic, payload, qos=qos, retain=retain)
        return current, int(info.mid), int(info.rc)

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
            check_tls_files(cfg)
            client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            if cfg.tls_insecure:
                client.tls_insecure_set(True)
        client.will_set(
            self._will.topic, self._will.offline(), qos=self._will.qos, retain=self._will.retain
        )
        client.on_socket_register_write = _no_op_register_write
        client.on_connect = lambda c, _u, flags, rc, _p: self._on_connect(c, generation, flags, rc)
        client.on_disconnect = lambda _c, _u, flags, rc, _p: self._on_disconnect(
            generation, describe_disconnect(rc, from_broker=_from_broker(flags))
        )
        client.on_publish = lambda _c, _u, mid, rc, _p: self._on_publish(generation, mid, rc)
        if self._subscriptions:
            client.on_message = lambda _c, _u, message: self._marshal(
                self._events.link_message, generation, message.topic, bytes(message.payload)
            )
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
            self._refused = int(getattr(rc, "value", 0)) not in _CONNACK_PROBE
            self._marshal(self._events.link_error, f"broker refused the connection: {rc}")
            client.disconnect()
            return
        self._reconnect.reset()
        if self._will.accepted is not None:
            self._will.accepted()
        if self._subscriptions:
            client.subscribe([(topic, 1) for topic in self._subscriptions])
        # Birth before any outbox row: queued here, on the network thread, before the loop hears.
        if self._will.online is not None:
            client.publish(self._will.topic, self._will.online(), qos=1, retain=True)
        with self._lock:
            self._client = client
        self._marshal(
            self._events.link_connected, generation, bool(getattr(flags, "session_present", False))
        )

    def _on_disconnect(self, generation: int, reason: str) -> None:
        # Reported once, by the thread loop after paho's loop returns (paho may call this twice).
        with self._lock:
            if self._generation == generation:
                self._client = None
                self._reason = reason

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
            self._refused = False
            try:
                client = self._make_client(generation)
                self._connect(client)
            except Exception as exc:  # every connect failure is retried and reported
                self._marshal(self._events.link_error, describe_error(exc))
                self._stop.wait(self._reconnect.next_delay(unreachable=unreachable(exc)))
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
                self._stop.wait(self._reconnect.next_delay(unreachable=not self._refused))


def _no_op_register_write(_client: Any, _userdata: Any, _sock: Any) -> None:
    """Registered so paho never writes the socket from the publishing (event-loop) thread."""
