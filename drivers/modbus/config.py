"""Typed configuration of Modbus devices and tags, parsed from ``[devices.<name>]`` tables.

:func:`parse_device` reads one device table through
:class:`~edge_agent.configkit.Table`, so every mistake is recorded with the
file, the dotted key path and what was expected, and parsing continues to
report all of them at once. It does no I/O and never opens a port.

Guarantees: the returned objects are frozen; every tag's wire address is
resolved from the device's explicit ``addressing`` ("zero" or "one"); every
tag fits inside one request (protocol limits and the device's block limits)
and inside the 16-bit address space; decoders can be built for every tag
without further checks.
"""

from __future__ import annotations

import enum
import ipaddress
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, fields

from drivers.modbus.codec import BIT_TABLE_TYPES, NUMERIC_TYPES, DataType, WordOrder, register_width
from drivers.reconnect import parse_reconnect
from edge_agent.configkit import Table

PROTOCOL_TCP = "modbus_tcp"
PROTOCOL_RTU = "modbus_rtu"

#: Protocol limits (Modbus Application Protocol v1.1b3, function codes 1-4).
MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000
MAX_STRING_CHARS = 2 * MAX_READ_REGISTERS


class ModbusTable(str, enum.Enum):
    """The four Modbus data tables."""

    COIL = "coil"
    DISCRETE_INPUT = "discrete_input"
    HOLDING = "holding"
    INPUT = "input"

    @property
    def is_bits(self) -> bool:
        """Whether the table holds single bits rather than 16-bit registers."""
        return self in (ModbusTable.COIL, ModbusTable.DISCRETE_INPUT)


class Addressing(str, enum.Enum):
    """How addresses in the config are counted: ``one`` means config 1 = wire 0."""

    ZERO = "zero"
    ONE = "one"


class Parity(str, enum.Enum):
    """Serial parity."""

    NONE = "N"
    EVEN = "E"
    ODD = "O"


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpTransport:
    """A Modbus TCP endpoint (one connection shared by every unit id behind it)."""

    host: str
    port: int

    @property
    def key(self) -> str:
        """Link identity: devices with the same key share one connection."""
        return (
            f"tcp://{self.host}:{self.port}"
            if ":" not in self.host
            else f"tcp://[{self.host}]:{self.port}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SerialTransport:
    """An RS-485/RS-232 port running Modbus RTU (one bus shared by several unit ids)."""

    port: str
    baudrate: int = 19200
    parity: Parity = Parity.NONE
    stopbits: int = 1
    bytesize: int = 8
    inter_frame_delay_ms: float = 0.0

    @property
    def key(self) -> str:
        """Link identity: devices on the same port share one bus owner."""
        return f"rtu://{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True, weakref_slot=True)
class ModbusTag:
    """One configured tag, with its wire (zero-based) address resolved.

    Immutable and shared: equal tags of several devices (one machine model on many
    devices) are one instance (:func:`_shared_tag`), which the configuration's compact
    copy keeps (``pickle`` preserves sharing).
    """

    name: str
    table: ModbusTable
    address: int
    """Zero-based address on the wire (after applying the device's addressing)."""
    config_address: int
    """The address as written in the config file."""
    dtype: DataType
    word_order: WordOrder
    bit: int = 0
    length: int = 0
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    interval_ms: int = 1000

    @property
    def width(self) -> int:
        """Registers (or bits) the tag occupies."""
        return register_width(self.dtype, self.length)


_TAG_FIELDS = tuple(f.name for f in fields(ModbusTag))


@dataclass(frozen=True, slots=True, kw_only=True)
class ModbusDeviceConfig:
    """One Modbus device (a unit id on a TCP endpoint or a serial bus)."""

    name: str
    protocol: str
    transport: TcpTransport | SerialTransport
    unit_id: int
    interval_ms: int
    addressing: Addressing
    word_order: WordOrder = WordOrder.ABCD
    timeout_ms: int = 1000
    retries: int = 0
    max_gap: int = 16
    max_block_registers: int = MAX_READ_REGISTERS
    max_block_bits: int = MAX_READ_BITS
    reprobe_ms: int = 300_000
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 1.0
    tags: tuple[ModbusTag, ...] = ()

    @property
    def tag_names(self) -> tuple[str, ...]:
        """Names of the configured tags, in file order."""
        return tuple(t.name for t in self.tags)

    @property
    def link_key(self) -> str:
        """Identity of the physical link this device is on."""
        return self.transport.key


def parse_endpoint(text: str) -> tuple[str, int] | None:
    """Split ``host:port`` or ``[v6]:port``; None when malformed."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]:")
        if not sep:
            return None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    else:
        host, sep, rest = text.rpartition(":")
        if not sep or not host or ":" in host:
            return None
    if not rest.isdigit() or not 1 <= int(rest) <= 65535:
        return None
    return host, int(rest)


def _default_inter_frame_ms(baudrate: int, bytesize: int, parity: Parity, stopbits: int) -> float:
    # Modbus over serial line v1.02 §2.5.1.1: 3.5 character times; 1.75 ms above 19200 baud.
    if baudrate > 19200:
        return 1.75
    bits_per_char = 1 + bytesize + (0 if parity is Parity.NONE else 1) + stopbits
    return 3.5 * bits_per_char * 1000.0 / baudrate


def _parse_transport(name: str, protocol: str, t: Table) -> TcpTransport | SerialTransport | None:
    if protocol == PROTOCOL_TCP:
        text = t.get_str("endpoint", expected="'host:port' (e.g. '127.0.0.1:502' or '[::1]:502')")
        parsed = parse_endpoint(text) if text else None
        if text and parsed is None:
            t.error(
                "endpoint",
                "expected 'host:port' with a port from 1 to 65535 ('[::1]:502' for IPv6),"
                f" got {text!r}",
            )
        return TcpTransport(host=parsed[0], port=parsed[1]) if parsed else None
    port = t.get_str("serial_port", expected="a serial device path such as '/dev/ttyUSB0'")
    baudrate = t.get_int("baudrate", 19200, min=300, max=4_000_000)
    parity = t.get_enum("parity", Parity, Parity.NONE)
    stopbits = t.get_int("stopbits", 1, min=1, max=2)
    bytesize = t.get_int("bytesize", 8, min=7, max=8)
    default_ifd = _default_inter_frame_ms(max(baudrate, 300), bytesize, parity, stopbits)
    ifd = t.get_float("inter_frame_delay_ms", default_ifd, min=0.0, max=1000.0)
    return SerialTransport(
        port=port,
        baudrate=baudrate,
        parity=parity,
        stopbits=stopbits,
        bytesize=bytesize,
        inter_frame_delay_ms=ifd,
    )


def _parse_tag(
    name: str,
    t: Table,
    *,
    addressing: Addressing,
    device_order: WordOrder,
    device_interval: int,
    max_regs: int,
    max_bits: int,
) -> ModbusTag | None:
    ok = len(t.issues.items)
    table = t.get_enum("table", ModbusTable)
    low = 1 if addressing is Addressing.ONE else 0
    high = 65536 if addressing is Addressing.ONE else 65535
    address = t.get_int("address", min=low, max=high)
    dtype = t.get_enum("type", DataType, DataType.BOOL if table.is_bits else DataType.UINT16)
    order = t.get_enum("word_order", WordOrder, device_order)
    interval = t.get_int("interval_ms", device_interval, min=10, max=86_400_000)
    unit = t.get_str("unit", "", nonempty=False)
    bit = 0
    length = 0
    if not t.ok("table", "type"):
        pass  # already reported; the placeholder would add a second, wrong error
    elif table.is_bits and dtype not in BIT_TABLE_TYPES:
        t.error("type", f"expected 'bool' for table {table.value!r}, got {dtype.value!r}")
    elif not table.is_bits and dtype is DataType.BOOL:
        t.error(
            "type",
            "'bool' is only for coils and discrete inputs;"
            f" use type = 'bit' with bit = N for {table.value!r}",
        )
    if dtype is DataType.BIT:
        bit = t.get_int("bit", min=0, max=15)
    elif t.has("bit"):
        t.get_raw("bit")
        t.error("bit", f"only allowed with type = 'bit', not {dtype.value!r}")
    if dtype is DataType.STRING:
        length = t.get_int("length", min=1, max=MAX_STRING_CHARS)
    elif t.has("length"):
        t.get_raw("length")
        t.error("length", f"only allowed with type = 'string', not {dtype.value!r}")
    scale, offset = 1.0, 0.0
    if dtype in NUMERIC_TYPES:
        scale = t.get_float("scale", 1.0)
        offset = t.get_float("offset", 0.0)
    else:
        for key in ("scale", "offset"):
            if t.has(key):
                t.get_raw(key)
                t.error(key, f"only allowed with numeric types, not {dtype.value!r}")
    t.finish()
    if len(t.issues.items) != ok:
        return None
    wire = address - low
    width = register_width(dtype, length)
    limit = max_bits if table.is_bits else max_regs
    if width > limit:
        t.error(
            "length",
            f"a {width}-register string cannot fit in one request (max_block_registers = {limit})",
        )
        return None
    if wire + width > 65536:
        t.error(
            "address", f"a {dtype.value} at {address} ends past the last address (width {width})"
        )
        return None
    return _shared_tag(
        ModbusTag(
            name=name,
            table=table,
            address=wire,
            config_address=address,
            dtype=dtype,
            word_order=order,
            bit=bit,
            length=length,
            scale=scale,
            offset=offset,
            unit=unit,
            interval_ms=interval,
        )
    )


# Tags in use, by value: 100 devices of one model held 12,500 copies of 125 tags
# (1.6 MB at the gateway benchmark, issue 20).
_TAGS: weakref.WeakValueDictionary[tuple[object, ...], ModbusTag] = weakref.WeakValueDictionary()


def _shared_tag(tag: ModbusTag) -> ModbusTag:
    """The instance equal to ``tag`` already in use, else ``tag`` (floats told apart by bits)."""
    key = tuple(v.hex() if type(v) is float else v for v in (getattr(tag, f) for f in _TAG_FIELDS))
    found = _TAGS.get(key)
    if found is None:
        _TAGS[key] = found = tag
    return found


def parse_device(name: str, t: Table) -> ModbusDeviceConfig:
    """Parse one ``[devices.<name>]`` table whose protocol is modbus_tcp or modbus_rtu.

    Problems are recorded in ``t.issues``; the caller raises them together. The
    returned object is only meaningful when no issue was recorded.
    """
    protocol = t.get_str("protocol", choices=(PROTOCOL_TCP, PROTOCOL_RTU))
    transport = _parse_transport(name, protocol or PROTOCOL_TCP, t)
    unit_max = 255 if protocol == PROTOCOL_TCP else 247
    unit_id = t.get_int("unit_id", min=0 if protocol == PROTOCOL_TCP else 1, max=unit_max)
    interval = t.get_int("interval_ms", 1000, min=10, max=86_400_000)
    addressing = t.get_enum("addressing", Addressing)
    order = t.get_enum("word_order", WordOrder, WordOrder.ABCD)
    timeout = t.get_int("timeout_ms", 1000, min=10, max=60_000)
    retries = t.get_int("retries", 0, min=0, max=5)
    max_gap = t.get_int("max_gap", 16, min=0, max=MAX_READ_BITS)
    max_regs = t.get_int("max_block_registers", MAX_READ_REGISTERS, min=1, max=MAX_READ_REGISTERS)
    max_bits = t.get_int("max_block_bits", MAX_READ_BITS, min=1, max=MAX_READ_BITS)
    reprobe = t.get_int("reprobe_ms", 300_000, min=1000, max=86_400_000)
    reconnect_min, reconnect_max = parse_reconnect(t, interval)
    tags: list[ModbusTag] = []
    had_tags = t.has("tags")
    tag_tables = t.tables("tags")
    if not had_tags:
        t.error("tags", f"missing, expected at least one [devices.{name}.tags.<tag>] table")
    elif not tag_tables and isinstance(t.data.get("tags"), dict):
        t.error("tags", "expected at least one tag table, got an empty table")
    for tag_name, tag_table in tag_tables:
        tag = _parse_tag(
            tag_name,
            tag_table,
            addressing=addressing,
            device_order=order,
            device_interval=interval,
            max_regs=max_regs,
            max_bits=max_bits,
        )
        if tag is not None:
            tags.append(tag)
    t.finish()
    return ModbusDeviceConfig(
        name=name,
        protocol=protocol,
        transport=transport or TcpTransport(host="invalid", port=1),
        unit_id=unit_id,
        interval_ms=interval,
        addressing=addressing,
        word_order=order,
        timeout_ms=timeout,
        retries=retries,
        max_gap=max_gap,
        max_block_registers=max_regs,
        max_block_bits=max_bits,
        reprobe_ms=reprobe,
        reconnect_min_s=reconnect_min,
        reconnect_max_s=reconnect_max,
        tags=tuple(tags),
    )


def check_shared_links(devices: Sequence[object]) -> list[tuple[str, str]]:
    """Cross-device checks: devices on one serial port must agree on its line settings.

    Returns:
        ``(dotted key path, message)`` for every device that disagrees with the
        first device configured on the same port.
    """
    first: dict[str, ModbusDeviceConfig] = {}
    problems: list[tuple[str, str]] = []
    for device in devices:
        if not isinstance(device, ModbusDeviceConfig):
            continue
        seen = first.setdefault(device.link_key, device)
        if seen is not device and seen.transport != device.transport:
            problems.append(
                (
                    f"devices.{device.name}.serial_port",
                    f"shares {device.transport.key} with devices.{seen.name} but its line settings"
                    " differ (baudrate, parity, stopbits, bytesize, inter_frame_delay_ms)",
                )
            )
    return problems
