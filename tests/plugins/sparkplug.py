"""An independent Sparkplug B decoder and host-side checker for the tests.

Independent of the agent's encoder: the Eclipse Tahu ``sparkplug_b.proto`` is
compiled *at test time* by ``protoc`` (grpcio-tools) into a descriptor set and
loaded into a private protobuf descriptor pool; the agent's generated
``sparkplug_b_pb2`` module is never imported here. A wrong or stale generated
module, or a hand-made encoding mistake, shows up as a decoding difference.

:func:`decode` turns a payload into plain Python (:class:`Msg`, :class:`M`), and
:class:`HostView` replays a captured message stream the way a Sparkplug host
application would, asserting the rules the specification puts on an Edge Node
(seq, bdSeq, births before data, aliases, DDATA only for born devices).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PROTO = (
    Path(__file__).resolve().parents[2]
    / "edge_agent"
    / "uplink"
    / "sparkplug"
    / "sparkplug_b.proto"
)
NS = "spBv1.0"


@functools.lru_cache(maxsize=1)
def payload_class() -> Any:
    """The ``Payload`` message class, compiled from the Tahu proto now (cached)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "spb.desc"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTO.parent}",
                f"--descriptor_set_out={out}",
                PROTO.name,
            ],
            check=True,
            timeout=60,
        )
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()  # private: not the default pool the agent uses
    for proto in files.file:
        pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload")
    )


@dataclass
class M:
    """One decoded metric (``value`` per datatype; ``None`` when ``is_null``)."""

    name: str | None
    alias: int | None
    timestamp: int | None
    datatype: int | None
    value: Any
    is_null: bool
    is_historical: bool
    properties: dict[str, Any]


@dataclass
class Msg:
    """One decoded Sparkplug message."""

    topic: str
    kind: str
    device: str | None
    timestamp: int | None
    seq: int | None
    metrics: list[M]

    def named(self, name: str) -> M:
        """The (first) metric with this name."""
        return next(m for m in self.metrics if m.name == name)


_SIGNED = {1: 8, 2: 16, 3: 32, 4: 64}


def _value(metric: Any) -> Any:
    field = metric.WhichOneof("value")
    if field is None:
        return None
    raw = getattr(metric, field)
    bits = _SIGNED.get(metric.datatype) if metric.HasField("datatype") else None
    if bits and isinstance(raw, int) and raw >= 1 << (bits - 1):
        return raw - (1 << bits)
    return raw


def decode(topic: str, raw: bytes) -> Msg:
    """Decode a Sparkplug payload published on ``topic``."""
    payload = payload_class().FromString(raw)
    parts = topic.split("/")
    metrics = []
    for m in payload.metrics:
        props: dict[str, Any] = {}
        if m.HasField("properties"):
            for key, value in zip(m.properties.keys, m.properties.values, strict=True):
                props[key] = (
                    getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
                )
        metrics.append(
            M(
                name=m.name if m.HasField("name") else None,
                alias=m.alias if m.HasField("alias") else None,
                timestamp=m.timestamp if m.HasField("timestamp") else None,
                datatype=m.datatype if m.HasField("datatype") else None,
                value=None if m.is_null else _value(m),
                is_null=m.is_null,
                is_historical=m.is_historical,
                properties=props,
            )
        )
    return Msg(
        topic=topic,
        kind=parts[2],
        device=parts[4] if len(parts) > 4 else None,
        timestamp=payload.timestamp if payload.HasField("timestamp") else None,
        seq=payload.seq if payload.HasField("seq") else None,
        metrics=metrics,
    )


def rebirth_command() -> bytes:
    """An NCMD payload asking for ``Node Control/Rebirth`` (as a host application sends it)."""
    cls = payload_class()
    payload = cls(timestamp=1)
    payload.metrics.add(name="Node Control/Rebirth", datatype=11, boolean_value=True)
    return bytes(payload.SerializeToString())


def state_payload(online: bool, timestamp: int) -> bytes:
    """A Sparkplug 3.0 STATE payload."""
    return json.dumps({"online": online, "timestamp": timestamp}).encode()


@dataclass
class Session:
    """One Edge Node session as a host sees it (from NBIRTH to NDEATH)."""

    bdseq: int
    births: list[Msg] = field(default_factory=list)
    data: list[Msg] = field(default_factory=list)
    deaths: list[Msg] = field(default_factory=list)


class HostView:
    """Replays a message stream of one Edge Node and checks the Edge Node rules.

    ``check()`` raises AssertionError with the offending message on the first
    violation: seq not +1 (mod 256) from the previous message of the node, NBIRTH
    seq not 0 or without bdSeq / Node Control/Rebirth=false, NDEATH with a seq or
    another metric, DATA before NBIRTH, DDATA for a device without a DBIRTH in the
    session (or after its DDEATH), a DATA metric with a name or unknown alias.
    """

    def __init__(self, messages: list[Msg], group: str, node: str) -> None:
        self.messages = [
            m
            for m in messages
            if m.topic.startswith(f"{NS}/{group}/") and m.topic.split("/")[3] == node
        ]
        self.sessions: list[Session] = []
        self.alias_names: dict[int, str] = {}

    def check(self) -> HostView:
        """Assert the rules over the whole stream; returns self."""
        seq: int | None = None
        session: Session | None = None
        born: set[str] = set()
        for msg in self.messages:
            where = f"{msg.topic} seq={msg.seq}"
            if msg.kind in ("NCMD", "DCMD"):
                continue  # sent by a host, not by the Edge Node
            if msg.kind == "NDEATH":
                assert msg.seq is None, f"NDEATH with a seq: {where}"
                assert [m.name for m in msg.metrics] == ["bdSeq"], f"NDEATH metrics: {where}"
                if session is not None and msg.metrics[0].value == session.bdseq:
                    session.deaths.append(msg)
                    session, seq, born = None, None, set()
                continue
            assert msg.seq is not None, f"seq missing: {where}"
            assert 0 <= msg.seq <= 255, f"seq out of range: {where}"
            if msg.kind == "NBIRTH":
                assert msg.seq == 0, f"NBIRTH seq: {where}"
                bd = msg.named("bdSeq")
                assert bd.datatype == 4, f"bdSeq not Int64: {where}"
                assert bd.alias is None, f"bdSeq with an alias: {where}"
                rebirth = msg.named("Node Control/Rebirth")
                assert rebirth.datatype == 11
                assert rebirth.value is False
                assert rebirth.alias is None
                if session is None or session.bdseq != bd.value:
                    session = Session(bdseq=bd.value)
                    self.sessions.append(session)
                # else: a rebirth within the same MQTT session (same bdSeq)
                session.births.append(msg)
                born = set()
                seq = 0
                self._learn(msg)
                continue
            assert session is not None, f"{msg.kind} outside a session: {where}"
            assert seq is not None, f"no seq before: {where}"
            assert msg.seq == (seq + 1) % 256, f"seq {msg.seq} after {seq}: {where}"
            seq = msg.seq
            if msg.kind == "DBIRTH":
                assert msg.device is not None
                born.add(msg.device)
                session.births.append(msg)
                self._learn(msg)
            elif msg.kind == "DDEATH":
                assert msg.device in born, f"DDEATH of a device not born: {where}"
                born.discard(msg.device)
                session.deaths.append(msg)
            elif msg.kind in ("DDATA", "NDATA"):
                if msg.kind == "DDATA":
                    assert msg.device in born, f"DDATA for a device not born: {where}"
                for m in msg.metrics:
                    assert m.name is None, f"DATA metric with a name: {where}"
                    assert m.datatype is None, f"DATA metric with a datatype: {where}"
                    assert m.alias in self.alias_names, f"unknown alias {m.alias}: {where}"
                    assert m.timestamp is not None, f"metric without timestamp: {where}"
                session.data.append(msg)
        return self

    def _learn(self, msg: Msg) -> None:
        for m in msg.metrics:
            assert m.name is not None, f"birth metric without name: {msg.topic}"
            assert m.datatype is not None, f"birth metric without datatype: {msg.topic}"
            assert m.timestamp is not None, f"birth metric without timestamp: {msg.topic}"
            if m.alias is not None:
                known = self.alias_names.get(m.alias)
                assert known in (None, m.name), f"alias {m.alias} reused: {known} / {m.name}"
                self.alias_names[m.alias] = m.name

    def values(self, device: str, name: str) -> list[tuple[int, Any, bool]]:
        """``(timestamp, value, is_historical)`` of a device metric over every DDATA."""
        out = []
        for msg in self.messages:
            if msg.kind == "DDATA" and msg.device == device:
                for m in msg.metrics:
                    if self.alias_names.get(m.alias or -1) == name:
                        out.append((m.timestamp or 0, m.value, m.is_historical))
        return out
