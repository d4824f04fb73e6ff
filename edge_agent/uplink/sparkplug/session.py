"""The Sparkplug B 3.0 Edge Node session: births, deaths, ``seq``, rebirth and primary host.

:class:`EdgeNode` is driven by the publisher (:mod:`edge_agent.uplink.publisher`)
on the event loop: it is told about connections, subscribed messages (NCMD,
STATE), device communication changes and the outbox rows to send, and it
publishes through a :class:`Sender` the publisher implements (one in-flight
window for everything). What it does, per the specification:

* **Session start.** Every CONNECT carries the NDEATH Will (QoS 1, not retained,
  ``bdSeq`` only; :mod:`.bdseq`). After the CONNACK the node subscribes to its
  NCMD and DCMD topics (and ``spBv1.0/STATE/<primary host>`` when one is
  configured). Without a primary host it then publishes NBIRTH (``seq`` 0, the
  Will's ``bdSeq``, ``Node Control/Rebirth`` = false, every Edge Node metric) and
  one DBIRTH per machine and per PLC device known to be up; with one, it first
  waits for a STATE message with ``online`` true.
* **Data.** Outbox rows are sent as NDATA/DDATA only after the births, each
  message taking the next ``seq`` (0-255, wrapping). A row stored before the
  current birth (``seq`` of the outbox <= the outbox's last seq at birth time) is
  *historical*: every metric is flagged ``is_historical`` so host applications
  store it without overwriting the live value the birth announced. So is a
  telemetry sample taken before its device's birth (it reaches the outbox with
  the telemetry round after the birth): the birth already carried a newer value.
* **Devices.** A PLC device reported down gets its DDEATH after
  ``device_death_grace_s`` (its last readings, still in the telemetry round,
  go out as its data first); reported up, it gets a DBIRTH. A row for a device
  that is not born (backlog of a device that is down now) is preceded by a
  DBIRTH, and a device still down is given its DDEATH again after the grace.
* **Rebirth.** An NCMD ``Node Control/Rebirth`` = true stops data, and the full
  birth sequence goes out again (same ``bdSeq``, ``seq`` from 0). The same
  happens when the catalog changes (configuration reload) or a metric's type is
  learned from its first value (OPC-UA).
* **Primary host.** STATE payloads are JSON ``{"online": bool, "timestamp": ms}``;
  one older than the last one seen is ignored. ``online`` false while born: the
  node publishes its NDEATH and drops the connection (the link reconnects with
  the next ``bdSeq`` and waits for ``online`` true again). Rows wait in the
  outbox meanwhile and go out, historical, after the next birth.
* **Stop.** An explicit NDEATH before the DISCONNECT (:meth:`EdgeNode.death`).

Nothing here blocks or does I/O except through the sender and the bdSeq file.
Guarantees: ``seq`` is only consumed by a message the sender accepted, so the
host sees no gap on our side; no DATA before NBIRTH, no DDATA for a device
without a DBIRTH in the current session.

Size: over 400 lines because the Edge Node state machine of the specification (births,
deaths, seq, rebirth, primary host) is one state; encoding is in rows.py, the catalog in
catalog.py.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from edge_agent.buffer.outbox import OutboxRow
from edge_agent.uplink.sparkplug import codec
from edge_agent.uplink.sparkplug.bdseq import BdSeq
from edge_agent.uplink.sparkplug.catalog import Catalog, DeviceKind, DeviceSpec
from edge_agent.uplink.sparkplug.config import SparkplugConfig
from edge_agent.uplink.sparkplug.rows import LastValue, RowEncoder

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
_NODE = ""  # the birth queue's marker for NBIRTH


class Sender(Protocol):
    """How the session publishes (implemented by the publisher, on the event loop)."""

    def send_control(self, topic: str, payload: bytes, qos: int) -> bool:
        """Publish a birth/death message; False when it could not be queued now."""

    def send_row(self, row: OutboxRow, topic: str, payload: bytes, qos: int) -> bool:
        """Publish a row's message (acknowledged to the outbox on PUBACK); False when not now."""

    def skip_row(self, row: OutboxRow) -> None:
        """Acknowledge a row that has nothing to publish in Sparkplug."""

    def free_slots(self) -> int:
        """Publishes that may still be queued now (the in-flight window)."""


class RowResult(enum.Enum):
    """What :meth:`EdgeNode.send_row` did with a row."""

    SENT = "sent"
    RETRY = "retry"  # not sent now: keep it first in line
    SKIPPED = "skipped"  # no Sparkplug mapping: acknowledged without publishing


@dataclass(frozen=True, slots=True)
class HostState:
    """The last STATE message of the primary host."""

    online: bool
    timestamp: int


Latest = Callable[[str, str], tuple[Any, float, bool] | None]
"""``latest(device, tag) -> (value, ts seconds, good)`` of the newest reading, or None."""


def parse_state(raw: bytes) -> HostState | None:
    """A Sparkplug 3.0 STATE payload, or None when it is not one."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    online, ts = doc.get("online"), doc.get("timestamp")
    if not isinstance(online, bool) or isinstance(ts, bool) or not isinstance(ts, int | float):
        return None
    return HostState(online=online, timestamp=int(ts))


class EdgeNode:
    """One Sparkplug Edge Node over the agent's MQTT link.

    Args:
        config: ``[mqtt.sparkplug]``.
        agent_id: The agent id (default Edge Node ID).
        bdseq: The persisted bdSeq counter.
        clock: Wall clock (seconds) for payload timestamps.
        monotonic: Monotonic clock (seconds) for the device-death grace.
    """

    def __init__(
        self,
        config: SparkplugConfig,
        agent_id: str,
        bdseq: BdSeq,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.node_id = config.node_id(agent_id)
        self.group_id = config.group_id
        self.bdseq = bdseq
        self.qos = int(config.qos)
        self._clock = clock
        self._mono = monotonic
        self._prefix = f"{NAMESPACE}/{self.group_id}"
        self.catalog: Catalog | None = None
        self.encoder: RowEncoder | None = None
        self.latest: Latest | None = None
        self.connected = False
        self.born = False
        self.seq = 0
        self.mark = 0  # outbox rows with seq <= mark were stored before the birth
        self.host: HostState | None = None
        self._host_online = config.primary_host_id == ""
        self._births: deque[str] = deque()  # device ids, _NODE for the NBIRTH
        self._born_devices: set[str] = set()
        self._birth_ms: dict[str, int] = {}
        self._device_up: dict[str, bool] = {}
        self._death_at: dict[str, float] = {}
        self._rebirth = False
        self._leave = False  # host went offline: NDEATH and disconnect
        self.births = 0
        self.rebirth_requests = 0
        self.skipped = 0

    # -- topics ------------------------------------------------------------------------
    def topic(self, message_type: str, device: str | None = None) -> str:
        """``spBv1.0/<group>/<type>/<node>[/<device>]``."""
        base = f"{self._prefix}/{message_type}/{self.node_id}"
        return base if device is None else f"{base}/{device}"

    @property
    def state_topic(self) -> str | None:
        """``spBv1.0/STATE/<primary host id>``, or None without a primary host."""
        host = self.config.primary_host_id
        return f"{NAMESPACE}/STATE/{host}" if host else None

    def subscriptions(self) -> tuple[str, ...]:
        """NCMD, DCMD (all devices) and the primary host's STATE topic."""
        subs = [self.topic("NCMD"), self.topic("DCMD", "+")]
        if self.state_topic:
            subs.append(self.state_topic)
        return tuple(subs)

    # -- configuration -----------------------------------------------------------------
    def describe(self, catalog: Catalog, latest: Latest | None = None) -> None:
        """Use ``catalog`` (from :func:`~.catalog.build_catalog`); rebirth if it changed."""
        old = self.catalog
        if old is not None:
            # Types learned from values (OPC-UA) survive a reload of the same metrics.
            for device_id, spec in catalog.devices.items():
                before = old.devices.get(device_id)
                for name, metric in spec.metrics.items():
                    known = before.metrics.get(name) if before is not None else None
                    if metric.datatype is None and known is not None:
                        metric.datatype = known.datatype
        if old is not None and old.signature() == catalog.signature():
            self.latest = latest or self.latest
            return
        encoder = RowEncoder(catalog)
        if self.encoder is not None:
            # Keep last values of metrics that still exist under the same alias and name.
            names = {m.alias: m.name for d in catalog.devices.values() for m in d.metrics.values()}
            old_names = {
                m.alias: m.name
                for d in (old.devices.values() if old else ())
                for m in d.metrics.values()
            }
            encoder.last = {
                a: v for a, v in self.encoder.last.items() if names.get(a) == old_names.get(a)
            }
        self.catalog, self.encoder = catalog, encoder
        if latest is not None:
            self.latest = latest
        if self.born:
            log.info("Sparkplug metric catalog changed: rebirth")
            self._rebirth = True

    # -- link events -------------------------------------------------------------------
    def will(self) -> bytes:
        """The NDEATH Will of the next CONNECT (network thread): stores the next bdSeq."""
        return codec.ndeath(self.bdseq.for_connect(), self._ms())

    def accepted(self) -> None:
        """The broker accepted the CONNECT (network thread)."""
        self.bdseq.accepted()

    def on_connected(self) -> None:
        """A new MQTT session: births are due (once the primary host is online)."""
        self.connected = True
        self.born = False
        self._born_devices.clear()
        self._births.clear()
        self._death_at.clear()
        self._leave = False
        if self.config.primary_host_id:
            self._host_online = False  # wait for the (retained) STATE on this session
        self._rebirth = True

    def on_disconnected(self) -> None:
        """The session ended: nothing is born any more."""
        self.connected = False
        self.born = False
        self._born_devices.clear()
        self._births.clear()
        self._death_at.clear()

    def on_message(self, topic: str, payload: bytes) -> None:
        """NCMD (rebirth), DCMD (ignored: no writes) or the primary host's STATE."""
        if topic == self.state_topic:
            self._on_state(payload)
        elif topic == self.topic("NCMD"):
            if codec.is_rebirth_request(payload):
                self.rebirth_requests += 1
                log.info("Sparkplug rebirth requested by NCMD")
                self._rebirth = True
        else:
            log.debug("Sparkplug command ignored (the agent writes nothing): topic=%s", topic)

    def _on_state(self, payload: bytes) -> None:
        state = parse_state(payload)
        if state is None:
            log.warning("Primary host STATE payload not understood, ignored: %r", payload[:80])
            return
        if self.host is not None and state.timestamp < self.host.timestamp:
            return  # an older STATE than the one we acted on (e.g. a late retained copy)
        self.host = state
        if state.online and not self._host_online:
            log.info("Primary host online: host=%s", self.config.primary_host_id)
            self._host_online = True
            self._rebirth = True
        elif not state.online and self._host_online:
            log.warning("Primary host offline, holding data: host=%s", self.config.primary_host_id)
            self._host_online = False
            if self.born or self._births:
                self._leave = True

    def device_comms(self, device: str, up: bool) -> None:
        """A configured device's communication went up or down (from the runtime)."""
        self._device_up[device] = up
        catalog = self.catalog
        spec = catalog.plc.get(device) if catalog is not None else None
        if spec is None:
            return
        if up:
            self._death_at.pop(spec.device_id, None)
            due = spec.device_id not in self._born_devices and spec.device_id not in self._births
            if self.born and due:
                self._births.append(spec.device_id)
        elif spec.device_id in self._born_devices:
            self._death_at[spec.device_id] = self._mono() + self._grace(spec)

    # -- publishing --------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether rows may be sent (born, births sent, no rebirth or leave pending)."""
        return self.born and not self._births and not self._rebirth and not self._leave

    @property
    def leaving(self) -> bool:
        """The node must publish NDEATH and disconnect (primary host offline)."""
        return self._leave

    def pump(self, sender: Sender, last_seq: int) -> bool:
        """Publish what is due before rows (births, deaths); True when rows may follow.

        Args:
            sender: The publisher.
            last_seq: The outbox's last seq now (the historical mark of a new birth).
        """
        if not self.connected or self.catalog is None or self._leave:
            return False
        if self._rebirth:
            if not self._host_online:
                return False
            self._start_births(last_seq)
        while self._births:
            if sender.free_slots() <= 0:
                return False
            if not self._send_birth(sender, self._births[0]):
                return False
            self._births.popleft()
        if not self.born:
            return False
        if self._death_at:
            now = self._mono()
            for device_id in [d for d, at in self._death_at.items() if at <= now]:
                if sender.free_slots() <= 0 or not self._send_death(sender, device_id):
                    return False
                del self._death_at[device_id]
        return True

    def leave(self, sender: Sender) -> bool:
        """Publish the NDEATH before an intentional disconnect; True when it was queued."""
        current = self.bdseq.current
        if current is None or not self.connected:
            return False
        ok = sender.send_control(self.topic("NDEATH"), codec.ndeath(current, self._ms()), 1)
        if ok:
            self.born = False
            self._leave = False
        return ok

    def send_row(self, sender: Sender, row: OutboxRow) -> RowResult:
        """Encode and publish one outbox row (after :meth:`pump` returned True)."""
        encoder = self.encoder
        if encoder is None or not self.ready:
            return RowResult.RETRY  # births (or a rebirth, or leaving) come first
        encoded = encoder.encode(row, historical=row.seq <= self.mark, since=self._birth_time)
        if encoded is None:
            self.skipped += 1
            sender.skip_row(row)
            return RowResult.SKIPPED
        if encoded.learned:
            log.info("Sparkplug metric type learned from its first value: rebirth")
            self._rebirth = True
            return RowResult.RETRY
        device = encoded.device
        if device is not None and device.device_id not in self._born_devices:
            if sender.free_slots() <= 0 or not self._send_birth(sender, device.device_id):
                return RowResult.RETRY
            if device.kind is DeviceKind.PLC and self._device_up.get(device.source) is False:
                self._death_at[device.device_id] = self._mono() + self._grace(device)
        payload = encoded.payload
        payload.timestamp = self._ms()
        payload.seq = self.seq
        topic = self.topic("NDATA") if device is None else self.topic("DDATA", device.device_id)
        if not sender.send_row(row, topic, payload.SerializeToString(), self.qos):
            return RowResult.RETRY
        self._advance()
        return RowResult.SENT

    # -- births and deaths -------------------------------------------------------------
    def _start_births(self, last_seq: int) -> None:
        catalog = self.catalog
        if catalog is None:
            return
        self._rebirth = False
        self.born = False
        self._born_devices.clear()
        self._births.clear()
        self.seq = 0
        self.mark = last_seq
        self._births.append(_NODE)
        for spec in catalog.devices.values():
            if spec.kind is not DeviceKind.PLC or self._device_up.get(spec.source):
                self._births.append(spec.device_id)

    def _send_birth(self, sender: Sender, device_id: str) -> bool:
        if device_id == _NODE:
            return self._send_nbirth(sender)
        spec = self.catalog.devices.get(device_id) if self.catalog is not None else None
        if spec is None:
            return True  # removed by a reload: nothing to announce
        payload = codec.Payload(timestamp=self._ms(), seq=self.seq)
        self._birth_metrics(payload, spec)
        if not sender.send_control(
            self.topic("DBIRTH", device_id), payload.SerializeToString(), self.qos
        ):
            return False
        self._advance()
        self._born_devices.add(device_id)
        self._birth_ms[device_id] = payload.timestamp
        return True

    def _send_nbirth(self, sender: Sender) -> bool:
        catalog = self.catalog
        bdseq = self.bdseq.current
        if catalog is None or bdseq is None:
            return False
        now = self._ms()
        payload = codec.Payload(timestamp=now, seq=0)
        codec.bdseq_metric(payload, bdseq, now)
        codec.rebirth_metric(payload, now)
        last = self.encoder.last if self.encoder is not None else {}
        for name, spec in catalog.node_metrics.items():
            value: Any = catalog.info.get(name)
            ts, quality = now, None
            if value is None and (seen := last.get(spec.alias)) is not None:
                value, ts, quality = seen.value, seen.ts_ms, seen.quality
            codec.add_birth_metric(payload, spec, value, ts, quality=quality)
        self.seq = 0
        if not sender.send_control(self.topic("NBIRTH"), payload.SerializeToString(), self.qos):
            return False
        self._advance()
        self.born = True
        self.births += 1
        log.info(
            "Sparkplug NBIRTH: group=%s node=%s bdSeq=%d devices=%d",
            self.group_id,
            self.node_id,
            bdseq,
            len(self._births) - 1,
        )
        return True

    def _birth_metrics(self, payload: codec.Payload, spec: DeviceSpec) -> None:
        now = self._ms()
        last: Mapping[int, LastValue] = self.encoder.last if self.encoder is not None else {}
        latest = self.latest if spec.kind is DeviceKind.PLC else None
        for name, metric in spec.metrics.items():
            if metric.datatype is None:
                continue  # type not known yet: announced by the rebirth that learns it
            value: Any = None
            ts, quality = now, None
            fresh = latest(spec.source, name) if latest is not None else None
            if fresh is not None:
                value, seconds, good = fresh
                ts = round(seconds * 1000)
                quality = None if good else codec.QUALITY_BAD
            elif (seen := last.get(metric.alias)) is not None:
                value, ts, quality = seen.value, seen.ts_ms, seen.quality
            codec.add_birth_metric(payload, metric, value, ts, quality=quality)

    def _send_death(self, sender: Sender, device_id: str) -> bool:
        if device_id not in self._born_devices:
            return True
        if not sender.send_control(
            self.topic("DDEATH", device_id), codec.ddeath(self.seq, self._ms()), self.qos
        ):
            return False
        self._advance()
        self._born_devices.discard(device_id)
        log.info("Sparkplug DDEATH: device=%s", device_id)
        return True

    # -- helpers -----------------------------------------------------------------------
    def _grace(self, device: DeviceSpec) -> float:
        """Seconds from "device down" to its DDEATH: its last readings go out first."""
        return device.flush_s + self.config.device_death_grace_s

    def _birth_time(self, device: DeviceSpec) -> int:
        """When the device was (or is about to be) born in this session, in ms."""
        return self._birth_ms.get(device.device_id) or self._ms()

    def _advance(self) -> None:
        self.seq = (self.seq + 1) % 256

    def _ms(self) -> int:
        return round(self._clock() * 1000)

    def state(self) -> dict[str, Any]:
        """Session figures for health telemetry and ``status``."""
        return {
            "group_id": self.group_id,
            "edge_node_id": self.node_id,
            "bdseq": self.bdseq.current,
            "born": self.born,
            "seq": self.seq,
            "devices_born": len(self._born_devices),
            "primary_host_online": self._host_online if self.config.primary_host_id else None,
            "births": self.births,
            "rebirth_requests": self.rebirth_requests,
            "skipped_rows": self.skipped,
        }
