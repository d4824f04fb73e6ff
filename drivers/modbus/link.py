"""The owner of one Modbus link: a TCP endpoint or a serial port and every device on it.

:class:`ModbusLink` implements :class:`drivers.base.Link`. One asyncio task
(:func:`drivers.base.run_link`) drives it, so requests on the connection are
serialised without locks, and on RTU the inter-frame delay is respected
between a response and the next request. Each device's plan runs on its own
:class:`~drivers.base.GridClock` per interval; ``poll`` waits for the earliest
due schedule, runs every due schedule in order and returns their readings.

What it does with failures:

* transport lost (refused, reset, closed by pymodbus after repeated silence):
  :class:`~edge_agent.errors.DeviceUnavailable` is raised and ``run_link``
  reconnects the whole link with backoff;
* one unit id does not answer (timeout, gateway exception 10/11): that device
  gets a comms-lost event and bad readings, and is put in its own backoff so a
  dead unit behind a gateway stops stealing the link's time from its
  neighbours; the first good read afterwards emits comms-restored;
* illegal address/function/value: the block is bisected until the offending
  tag is isolated; that tag reads bad ("illegal address") and is re-probed
  every ``reprobe_ms``; the refined plan is kept;
* busy/device failure: the block's tags read bad for this cycle only;
* an answer that does not match its request (unit id, function code, byte count
  against the registers or bits asked for, trailing bytes, CRC; checked on the raw
  bytes by :mod:`.frames` before pymodbus decodes them) or that makes pymodbus
  fail: the block's tags read bad with the reason ("invalid response: ..."),
  ``invalid_response`` is counted, and the connection is dropped and reopened at
  once, since the rest of a bad answer may still be on its way;
* library errors never leave the driver: anything pymodbus raises is one of the
  cases above, logged once per device and condition (the traceback at DEBUG).

It does not retry writes (it never writes), does not buffer readings (the
sink does) and never lets pymodbus reconnect on its own (``reconnect_delay=0``:
two reconnection owners leak sockets, see library notes §1).

Size: over 400 lines because one :class:`Link`: connection lifecycle, block reads, frame
validation and diagnostics share the per-connection state; the pure parts (plan, codec,
layout, responses) are separate modules.
"""

from __future__ import annotations

import asyncio
import logging
import termios
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.base import Backoff, DeviceDiagnostics, GridClock, PollResult
from drivers.modbus.config import ModbusDeviceConfig, ModbusTable, SerialTransport, TcpTransport
from drivers.modbus.frames import Check, Expected, Verdict, check_rtu, check_tcp
from drivers.modbus.planner import Block, plan_device, split_block
from drivers.modbus.responses import READ_RESPONSES
from edge_agent.columns import Column, ColumnPoll
from edge_agent.errors import DecodeError, DeviceUnavailable
from edge_agent.model import CommsEvent, CommsState, Quality, Reading

_GOOD = Quality.GOOD
_tuple_new = tuple.__new__
# _decode builds Readings positionally with tuple.__new__ (tag by tag, when a block does
# not decode whole), in the field order edge_agent.columns checks when it is imported.

log = logging.getLogger("edge_agent.drivers.modbus")

# Modbus exception codes (Modbus Application Protocol v1.1b3 §7).
ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
DEVICE_FAILURE = 4
DEVICE_BUSY = 6
GATEWAY_PATH_UNAVAILABLE = 10
GATEWAY_NO_RESPONSE = 11

_ISOLATE = {
    ILLEGAL_FUNCTION: "illegal function",
    ILLEGAL_ADDRESS: "illegal address",
    ILLEGAL_VALUE: "illegal address",
}
_TRANSIENT = {DEVICE_FAILURE: "device failure", DEVICE_BUSY: "device busy"}

_READERS = {
    ModbusTable.COIL: "read_coils",
    ModbusTable.DISCRETE_INPUT: "read_discrete_inputs",
    ModbusTable.HOLDING: "read_holding_registers",
    ModbusTable.INPUT: "read_input_registers",
}
_FUNCTIONS = {
    ModbusTable.COIL: 1,
    ModbusTable.DISCRETE_INPUT: 2,
    ModbusTable.HOLDING: 3,
    ModbusTable.INPUT: 4,
}


class UnitTimeout(Exception):
    """One unit id did not answer (the connection itself is fine)."""


class ExceptionReply(Exception):
    """The device answered with a Modbus exception code."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.reason = _ISOLATE.get(code) or _TRANSIENT.get(code) or f"exception code {code}"
        super().__init__(self.reason)


class InvalidResponse(ModbusException):
    """The device answered, but not with a valid answer to the request (see :mod:`.frames`).

    A :class:`pymodbus.exceptions.ModbusException` so that callers handling protocol
    errors (the probe) handle it too; ``kind`` names the condition for counting and
    logging (``function_code``, ``unit_id``, ``byte_count``, ``trailing_bytes``,
    ``crc``, ``framing``, ``length``, ``library``).
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid response: {self.reason}"


class _ResponseGuard:
    """pymodbus' ``trace_packet`` hook: only a valid answer to the outstanding request passes.

    Called with every buffer sent and (accumulated) received. A received buffer
    that is not yet complete, or is invalid, is hidden from pymodbus (``b""``: it
    decodes nothing, so it never raises inside ``data_received``); an invalid one
    also fails the pending request at once with :class:`InvalidResponse` instead of
    letting it time out. Bytes arriving while no request is outstanding are hidden
    too and flagged, so the next request starts on a fresh connection.
    """

    def __init__(self, *, rtu: bool) -> None:
        self._check = check_rtu if rtu else check_tcp
        self._rtu = rtu
        self.ctx: Any = None
        self.expected: Expected | None = None
        self.problem: Check | None = None
        self.unsolicited = False

    def expect(self, unit: int, function: int, count: int) -> None:
        """A request is about to be sent."""
        self.expected = Expected(unit=unit, function=function, count=count)
        self.problem = None

    def done(self) -> None:
        """The request is over (answered, failed or timed out)."""
        self.expected = None

    def __call__(self, sending: bool, data: bytes) -> bytes:
        expected = self.expected
        if sending:
            if expected is not None and not self._rtu and len(data) >= 2:
                self.expected = Expected(
                    expected.unit, expected.function, expected.count, int.from_bytes(data[:2])
                )
            return data
        if expected is None:
            self.unsolicited = True
            return b""
        check = self._check(expected, data)
        if check.verdict is Verdict.COMPLETE:
            return data
        if check.verdict is Verdict.INVALID:
            self.problem = check
            self.expected = None
            future = getattr(self.ctx, "response_future", None)
            if isinstance(future, asyncio.Future) and not future.done():
                future.set_exception(InvalidResponse(check.kind, check.reason))
        return b""


@dataclass(slots=True)
class _BadTag:
    block: Block
    reason: str
    reprobe_at: float


@dataclass(slots=True)
class _Schedule:
    device: _Device
    interval_ms: int
    blocks: list[Block]
    bad: list[_BadTag] = field(default_factory=list)
    clock: GridClock | None = None


@dataclass(slots=True)
class _Device:
    config: ModbusDeviceConfig
    diag: DeviceDiagnostics = field(default_factory=DeviceDiagnostics)
    down: bool = False
    retry_at: float = 0.0
    backoff: Backoff = field(default_factory=lambda: Backoff(initial_s=1.0, max_s=30.0))
    schedules: list[_Schedule] = field(default_factory=list)
    invalid: str | None = None  # the invalid-response condition already logged


class ModbusLink:
    """One TCP endpoint or serial port, and the plans of every device on it."""

    def __init__(self, devices: Sequence[ModbusDeviceConfig]) -> None:
        """Build the link; every device must share the same transport key.

        Raises:
            ValueError: When ``devices`` is empty or spans several links.
        """
        if not devices:
            raise ValueError("a link needs at least one device")
        keys = {d.link_key for d in devices}
        if len(keys) != 1:
            raise ValueError(f"devices span several links: {sorted(keys)}")
        self._transport = devices[0].transport
        self._name = devices[0].link_key
        self._devices = [_Device(config=d) for d in devices]
        for dev in self._devices:
            plan = plan_device(dev.config)
            dev.schedules = [
                _Schedule(device=dev, interval_ms=p.interval_ms, blocks=list(p.blocks))
                for p in plan.intervals
            ]
        self._schedules = [s for dev in self._devices for s in dev.schedules]
        self._client: Any = None
        self._guard = _ResponseGuard(rtu=isinstance(self._transport, SerialTransport))
        self._last_io = 0.0
        ifd = (
            self._transport.inter_frame_delay_ms
            if isinstance(self._transport, SerialTransport)
            else 0.0
        )
        self._inter_frame_s = ifd / 1000.0

    # -- Link protocol ------------------------------------------------------
    @property
    def name(self) -> str:
        """The endpoint (``tcp://host:port``) or port (``rtu:///dev/ttyUSB0``)."""
        return self._name

    @property
    def device_names(self) -> tuple[str, ...]:
        """Devices served by this link."""
        return tuple(d.config.name for d in self._devices)

    @property
    def tags_by_device(self) -> dict[str, tuple[str, ...]]:
        """Tag names of every device on this link (what ``run_link`` needs)."""
        return {d.config.name: d.config.tag_names for d in self._devices}

    def diagnostics(self) -> Mapping[str, DeviceDiagnostics]:
        """Per-device counters (live objects; read, do not mutate)."""
        return {d.config.name: d.diag for d in self._devices}

    async def connect(self) -> None:
        """Open the connection and restart every schedule on a fresh grid.

        Raises:
            DeviceUnavailable: The endpoint refused, or the port cannot be opened.
        """
        await self.close()
        self._client = await self._open_client()
        now = time.monotonic()
        for dev in self._devices:
            # run_link reports the link-level transition; per-device state starts afresh.
            dev.down = False
            dev.retry_at = 0.0
            dev.backoff.reset()
        for s in self._schedules:
            s.clock = GridClock(s.interval_ms / 1000.0, now=now)

    async def _open_client(self) -> Any:
        """A connected pymodbus client whose received bytes pass through the guard."""
        timeout_s = max(d.config.timeout_ms for d in self._devices) / 1000.0
        transport = self._transport
        guard = self._guard
        if isinstance(transport, TcpTransport):
            client: Any = AsyncModbusTcpClient(
                transport.host,
                port=transport.port,
                timeout=timeout_s,
                retries=0,
                reconnect_delay=0,
                trace_packet=guard,
            )
        else:
            client = AsyncModbusSerialClient(
                transport.port,
                framer=FramerType.RTU,
                baudrate=transport.baudrate,
                bytesize=transport.bytesize,
                parity=transport.parity.value,
                stopbits=transport.stopbits,
                timeout=timeout_s,
                retries=0,
                reconnect_delay=0,
                trace_packet=guard,
            )
        for response in READ_RESPONSES:  # one-call register decode, no str(pdu) per read
            client.register(response)
        guard.ctx = client.ctx
        guard.done()
        guard.unsolicited = False
        try:
            ok = await client.connect()
        except (OSError, ValueError, termios.error, ModbusException) as exc:
            # termios.error is not an OSError: pyserial raises it for line settings the
            # port refuses (e.g. parity on a pseudo-terminal).
            client.close()
            raise DeviceUnavailable(f"cannot open {self._name}: {exc}") from exc
        except Exception as exc:  # a library failure stays inside the driver
            log.debug("Unexpected error while connecting link=%s", self._name, exc_info=True)
            client.close()
            raise DeviceUnavailable(f"cannot open {self._name}: {type(exc).__name__}") from exc
        if not ok:
            client.close()
            raise DeviceUnavailable(f"cannot connect to {self._name}")
        return client

    async def _resync(self) -> None:
        """Drop the connection and open a fresh one: the rest of a bad answer is discarded.

        Raises:
            DeviceUnavailable: The connection cannot be reopened.
        """
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                log.debug("Ignoring error while closing link=%s", self._name, exc_info=True)
        self._client = await self._open_client()

    async def close(self) -> None:
        """Close the connection; never raises."""
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                log.debug("Ignoring error while closing link=%s", self._name, exc_info=True)

    async def poll(self) -> PollResult:
        """Wait for the earliest due schedule, run every due schedule, return what was read.

        Raises:
            DeviceUnavailable: The connection was lost.
        """
        if self._client is None:
            raise DeviceUnavailable(f"{self._name} is not connected")
        if not self._schedules:
            await asyncio.Event().wait()  # nothing to poll (tag-less probe link): idle
        while True:
            due = min(s.clock.next_due() for s in self._schedules if s.clock is not None)
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            result = PollResult()
            for s in self._schedules:
                clock = s.clock
                if clock is None:
                    continue
                now = time.monotonic()
                if clock.next_due() > now:
                    continue
                skipped = clock.advance(now)
                dev = s.device
                if dev.down and now < dev.retry_at:
                    continue  # unit in backoff: its ticks pass silently
                dev.diag.skipped_cycles += skipped
                await self._run(s, result)
            if result.batches or result.events:
                return result

    # -- one schedule -----------------------------------------------------------
    async def _run(self, s: _Schedule, result: PollResult) -> None:
        dev = s.device
        readings: list[Column | Reading] = []  # blocks that decoded whole stay columns
        refined: list[Block] = []
        invalid_before = dev.diag.errors.get("invalid_response", 0)
        try:
            for block in s.blocks:
                await self._read_isolating(s, block, refined, readings)
            await self._reprobe(s, refined, readings)
        except UnitTimeout as exc:
            self._unit_failed(dev, str(exc), result)
            return
        s.blocks = refined
        if dev.invalid is not None and dev.diag.errors.get("invalid_response", 0) == invalid_before:
            log.info(
                "Device answers validly again device=%s link=%s unit=%d",
                dev.config.name,
                self._name,
                dev.config.unit_id,
            )
            dev.invalid = None
        if s.bad:
            ts, mono = time.time(), time.monotonic()
            for bad in s.bad:
                readings.extend(self._bad(dev, bad.block, bad.reason, ts, mono))
        if dev.down:
            dev.down = False
            dev.backoff.reset()
            # run_link logs the transition once for every protocol; this is the unit detail.
            log.debug(
                "Device restored device=%s link=%s unit=%d",
                dev.config.name,
                self._name,
                dev.config.unit_id,
            )
            result.events.append(
                CommsEvent(
                    device=dev.config.name,
                    state=CommsState.UP,
                    ts=time.time(),
                    mono=time.monotonic(),
                )
            )
        if readings:
            result.batches.append(_batch(dev.config.name, readings))

    def _unit_failed(self, dev: _Device, reason: str, result: PollResult) -> None:
        dev.retry_at = time.monotonic() + dev.backoff.next_delay()
        if dev.down:
            return
        dev.down = True
        cfg = dev.config
        log.debug(  # run_link logs the transition once for every protocol
            "Device lost device=%s link=%s unit=%d reason=%r",
            cfg.name,
            self._name,
            cfg.unit_id,
            reason,
        )
        ts, mono = time.time(), time.monotonic()
        result.events.append(
            CommsEvent(device=cfg.name, state=CommsState.DOWN, ts=ts, mono=mono, reason=reason)
        )
        result.batches.append(
            [
                Reading(
                    device=cfg.name,
                    tag=t,
                    value=None,
                    ts=ts,
                    mono=mono,
                    quality=Quality.BAD,
                    reason=reason,
                )
                for t in cfg.tag_names
            ]
        )

    async def _read_isolating(
        self, s: _Schedule, block: Block, refined: list[Block], readings: list[Column | Reading]
    ) -> None:
        dev = s.device
        try:
            words, ts, mono = await self.read_block(dev.config, block, dev.diag)
        except ExceptionReply as exc:
            if exc.code in _ISOLATE:
                halves = split_block(block)
                if halves is None:
                    reason = _ISOLATE[exc.code]
                    tag = block.tags[0].name
                    log.warning(
                        "Tag isolated device=%s tag=%s unit=%d table=%s address=%d reason=%r",
                        dev.config.name,
                        tag,
                        block.unit_id,
                        block.table.value,
                        block.start,
                        reason,
                    )
                    s.bad.append(
                        _BadTag(block, reason, time.monotonic() + dev.config.reprobe_ms / 1000.0)
                    )
                    return
                for half in halves:
                    await self._read_isolating(s, half, refined, readings)
                return
            refined.append(block)
            readings.extend(self._bad(dev, block, exc.reason, time.time(), time.monotonic()))
            return
        except InvalidResponse as exc:
            self._note_invalid(dev, exc)
            refined.append(block)
            readings.extend(self._bad(dev, block, str(exc), time.time(), time.monotonic()))
            return
        except ModbusException as exc:
            refined.append(block)
            readings.extend(
                self._bad(dev, block, f"protocol error: {exc}", time.time(), time.monotonic())
            )
            return
        refined.append(block)
        self._decode(dev, block, words, ts, mono, readings)

    async def _reprobe(
        self, s: _Schedule, refined: list[Block], readings: list[Column | Reading]
    ) -> None:
        now = time.monotonic()
        for bad in list(s.bad):
            if now < bad.reprobe_at:
                continue
            try:
                words, ts, mono = await self.read_block(s.device.config, bad.block, s.device.diag)
            except (ExceptionReply, ModbusException) as exc:
                if isinstance(exc, InvalidResponse):
                    self._note_invalid(s.device, exc)
                bad.reprobe_at = now + s.device.config.reprobe_ms / 1000.0
                continue
            log.info("Tag recovered device=%s tag=%s", s.device.config.name, bad.block.tags[0].name)
            s.bad.remove(bad)
            refined.append(bad.block)
            self._decode(s.device, bad.block, words, ts, mono, readings)

    def _note_invalid(self, dev: _Device, exc: InvalidResponse) -> None:
        """Log an invalid-response condition once per device and kind (it is counted anyway)."""
        if dev.invalid == exc.kind:
            return
        dev.invalid = exc.kind
        log.warning(
            "Device sends invalid responses, its tags read bad device=%s link=%s unit=%d reason=%r",
            dev.config.name,
            self._name,
            dev.config.unit_id,
            exc.reason,
        )

    @staticmethod
    def _decode(
        dev: _Device,
        block: Block,
        words: Sequence[Any],
        ts: float,
        mono: float,
        out: list[Column | Reading],
    ) -> None:
        name = dev.config.name
        # Hot path (every polled register): a block whose tags all decode becomes one
        # Column, its values from one struct call when the block allows it; no
        # per-value object.
        tags = block.tags
        decode_all = block.decode_all
        try:
            if decode_all is not None:
                values = decode_all(words)  # the whole block in one struct call
            else:
                values = [pt.decode(words, pt.offset) for pt in tags]
        except DecodeError:
            pass  # at least one tag does not decode: tag by tag below
        else:
            names = block.names if len(block.names) == len(tags) else block.tag_names
            out.append(Column(names, values, ts, mono))
            dev.diag.last_good_ts = ts
            return
        new, good = _tuple_new, _GOOD
        append = out.append
        for pt in tags:
            try:
                value = pt.decode(words, pt.offset)
            except DecodeError as exc:
                dev.diag.record_error("decode")
                out.append(
                    Reading(
                        device=name,
                        tag=pt.name,
                        value=None,
                        ts=ts,
                        mono=mono,
                        quality=Quality.BAD,
                        reason=str(exc),
                    )
                )
                continue
            append(new(Reading, (name, pt.name, value, ts, mono, good, "", None)))
        dev.diag.last_good_ts = ts

    @staticmethod
    def _bad(dev: _Device, block: Block, reason: str, ts: float, mono: float) -> list[Reading]:
        name = dev.config.name
        return [
            Reading(
                device=name,
                tag=t.name,
                value=None,
                ts=ts,
                mono=mono,
                quality=Quality.BAD,
                reason=reason,
            )
            for t in block.tags
        ]

    # -- one request --------------------------------------------------------------
    async def read_block(
        self, device: ModbusDeviceConfig, block: Block, diag: DeviceDiagnostics
    ) -> tuple[Sequence[Any], float, float]:
        """Send one read request and return (words, wall time, monotonic time) of the response.

        Words are register ints or bit bools. Used by the poll loop and the probe.

        Raises:
            DeviceUnavailable: The connection is lost.
            UnitTimeout: The unit did not answer in time (gateway codes 10/11 included).
            ExceptionReply: The unit answered with another exception code.
            ModbusException: Any other protocol-level problem.
        """
        client = self._client
        if client is None:
            raise DeviceUnavailable(f"{self._name} is not connected")
        if self._inter_frame_s:
            # RTU: a frame ends after 3.5 silent characters; send only after that silence.
            wait = self._last_io + self._inter_frame_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        if self._guard.unsolicited:
            # Bytes arrived while nothing was asked: the stream may be out of step.
            await self._resync()
            client = self._client
        ctx = client.ctx
        ctx.comm_params.timeout_connect = device.timeout_ms / 1000.0
        ctx.retries = device.retries
        reader = getattr(client, _READERS[block.table])
        function = _FUNCTIONS[block.table]
        diag.requests += 1
        start = time.monotonic()
        guard = self._guard
        guard.expect(block.unit_id, function, block.count)
        try:
            response = await reader(block.start, count=block.count, device_id=block.unit_id)
        except InvalidResponse as exc:
            await self._invalid(exc, diag)
        except ConnectionException as exc:
            diag.record_error("connection")
            raise DeviceUnavailable(f"{self._name}: connection lost: {exc}") from exc
        except ModbusIOException as exc:
            # RTU has no transaction id. A late reply from another unit that arrives
            # while this request waits is refused by the guard (unit id) and the port
            # reopened; a late reply from this unit arrives while it sits in backoff
            # (>= 0.5 s), when no request is pending: the guard hides it and the port is
            # reopened before the next request. Only retries re-send the identical
            # request, so a late reply that satisfies a retry carries the right data.
            self._last_io = time.monotonic()
            problem = guard.problem
            if problem is not None:  # the guard could not fail the request itself
                await self._invalid(InvalidResponse(problem.kind, problem.reason), diag, exc)
            diag.record_error("timeout")
            if not client.connected:
                raise DeviceUnavailable(f"{self._name}: closed after repeated timeouts") from exc
            raise UnitTimeout("timeout") from exc
        except OSError as exc:
            diag.record_error("connection")
            raise DeviceUnavailable(f"{self._name}: {exc}") from exc
        except ModbusException:
            diag.record_error("protocol")
            raise
        except Exception as exc:
            # A library failure is one more kind of bad answer: it never leaves the driver.
            log.debug("pymodbus failed on a read link=%s", self._name, exc_info=True)
            await self._invalid(
                InvalidResponse("library", f"library error: {type(exc).__name__}: {exc}"),
                diag,
                exc,
            )
        finally:
            guard.done()
        mono = time.monotonic()
        ts = time.time()
        self._last_io = mono
        diag.record_rtt((mono - start) * 1000.0)
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            if code in (GATEWAY_PATH_UNAVAILABLE, GATEWAY_NO_RESPONSE):
                diag.record_error("gateway")
                raise UnitTimeout("gateway: target did not respond")
            diag.record_error(
                _ISOLATE.get(code, _TRANSIENT.get(code, f"exception {code}")).replace(" ", "_")
            )
            raise ExceptionReply(code)
        words = response.bits if block.table.is_bits else response.registers
        if int(getattr(response, "function_code", function)) != function or (
            len(words) < block.count or (not block.table.is_bits and len(words) != block.count)
        ):
            # The guard checked the bytes already; this holds if pymodbus ever decodes more.
            await self._invalid(
                InvalidResponse("length", f"{len(words)} values for {block.count} requested"),
                diag,
            )
        return words, ts, mono

    async def _invalid(
        self, exc: InvalidResponse, diag: DeviceDiagnostics, cause: BaseException | None = None
    ) -> NoReturn:
        """Count an invalid answer, resynchronise the connection and raise ``exc``.

        Raises:
            InvalidResponse: Always (``exc``), after the connection was reopened.
            DeviceUnavailable: The connection could not be reopened.
        """
        diag.record_error("invalid_response")
        self._last_io = time.monotonic()
        await self._resync()
        raise exc from cause


def _batch(device: str, parts: list[Column | Reading]) -> Sequence[Reading]:
    """One schedule's readings: a :class:`ColumnPoll` when every block decoded whole.

    Otherwise a list in read order, the columns' readings built (a bad block, an
    isolated tag or a value that did not decode is in it).
    """
    if all(type(p) is Column for p in parts):
        return ColumnPoll(device, parts)  # type: ignore[arg-type]
    readings: list[Reading] = []
    for p in parts:
        if type(p) is Column:
            readings.extend(ColumnPoll(device, (p,)))
        else:
            readings.append(p)  # type: ignore[arg-type]
    return readings


def build_links(devices: Sequence[object]) -> list[ModbusLink]:
    """Group devices by endpoint / serial port: one link (one connection) per group.

    Raises:
        TypeError: A device is not a Modbus device.
        ValueError: Two devices on the same serial port disagree on line settings.
    """
    groups: dict[str, list[ModbusDeviceConfig]] = {}
    for device in devices:
        if not isinstance(device, ModbusDeviceConfig):
            raise TypeError(f"not a Modbus device: {device!r}")
        groups.setdefault(device.link_key, []).append(device)
    for key, members in groups.items():
        settings = {m.transport for m in members}
        if len(settings) > 1:
            names = ", ".join(m.name for m in members)
            raise ValueError(f"devices {names} share {key} but disagree on serial settings")
    return [ModbusLink(members) for members in groups.values()]
