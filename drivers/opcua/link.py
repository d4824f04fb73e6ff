"""One OPC-UA session per endpoint, implementing :class:`drivers.base.Link`.

On :meth:`OpcuaLink.connect` the link opens a session (:mod:`session`),
resolves every configured address (``nsu=`` namespaces and browse paths are
looked up again on every connect), reads engineering-unit metadata, then:

* ``mode = "subscribe"`` devices: one subscription per publishing interval
  (``interval_ms``), one monitored item per tag (sampling interval, queue
  size, absolute/percent deadband filter; if the server rejects the filter
  the item is created without it and a warning is logged once). asyncua's
  iterator API is used (ordered, bounded: the oldest notification is dropped
  when 1,000 are waiting); one small pump task per subscription converts
  notifications into readings and appends them to the link's pending list;
* ``mode = "poll"`` devices: a :class:`~drivers.base.GridClock` per device;
  all tags due at one grid tick are read with ONE Read service call.

:meth:`OpcuaLink.poll` waits until something is due, returns one batch per
device, and raises :class:`~edge_agent.errors.DeviceUnavailable` when

* asyncua's health probe or the transport reports the session lost, or the
  server reports a bad subscription status (BadShutdown, BadTimeout ...);
* a subscription delivered neither data nor a keepalive for ``watchdog_s``
  (the "connected but silent" case): the session and its subscriptions are
  then rebuilt by :func:`drivers.base.run_link` after backoff.

Report by exception, done right: a subscription sends only changes, so every
publish response it sends (data or keepalive; asyncua's
``Subscription.last_publish_at``) confirms the unchanged values of every
device on it. After the response's changes the link returns one
:class:`~edge_agent.model.Confirmation` per device, stamped with the
response's arrival, and nothing else: confirmations are not readings (no
stored rows, no telemetry). The link checks for new responses at every
publishing interval (at most every second). A subscription that sends nothing
within its keepalive bound (:func:`keepalive_bound_s` of the server's revised
publishing interval x keepalive count) makes its values ``stale`` (one reading
per tag, reason ``not confirmed: ...``): that time is unknown to the KPIs. The
next publish response restores the last values as readings. Silent beyond
``watchdog_s``, the session is rebuilt (above).

Guarantees: notification order per subscription is kept; readings carry the
server SourceTimestamp in ``source_ts`` and a quality mapped from the status
code (:mod:`convert`); a tag whose address cannot be resolved or monitored
yields a bad reading with the reason while the rest of the device runs;
a confirmation never precedes the changes of the response it stands for;
asyncua types never leave this package.

Size: over 400 lines because one :class:`Link`: session lifecycle, subscriptions,
keepalive confirmation and the silence watchdog share the session state; session setup
and security are in session.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent, Subscription

from drivers.base import ConfirmedBy, DeviceDiagnostics, GridClock, PollResult
from drivers.opcua._ua import AttributeIds, Client, StatusCodes
from drivers.opcua.config import Mode, OpcuaDevice, OpcuaTag
from drivers.opcua.convert import reading_from, status_name
from drivers.opcua.requests import monitored_item_request, subscription_parameters
from drivers.opcua.resolve import read_metadata, resolve_browse_paths, resolve_node_refs
from drivers.opcua.session import TRANSPORT_ERRORS, close_client, open_client
from edge_agent.errors import DeviceUnavailable
from edge_agent.model import Confirmation, Quality, Reading

log = logging.getLogger("edge_agent.drivers.opcua")

#: Bound of asyncua's per-subscription iterator queue (drop oldest when full).
SUBSCRIPTION_QUEUE_MAX = 1000
#: Bound of the link's pending readings between pump and poll (drop newest, counted).
PENDING_MAX = 50_000
#: Longest wait between two looks at a subscription's last publish response.
CONFIRM_CHECK_MAX_S = 1.0


def keepalive_bound_s(keepalive_s: float) -> float:
    """How long a publish response confirms a subscription's values (the keepalive bound).

    The keepalive period (publishing interval x keepalive count, as the server revised
    them) plus half of it, at least one second, for network and scheduling delay.
    """
    return keepalive_s + max(0.5 * keepalive_s, 1.0)


_FILTER_REJECTED = {
    StatusCodes.BadMonitoredItemFilterUnsupported,
    StatusCodes.BadFilterNotAllowed,
    StatusCodes.BadDeadbandFilterInvalid,
}


@dataclass(slots=True)
class _Item:
    """One configured tag on this session, after resolution."""

    device: str
    tag: OpcuaTag
    node_id: ua.NodeId | None = None
    error: str = ""


@dataclass(slots=True)
class _SubState:
    """A live subscription and what the watchdog and the confirmations need to judge it."""

    sub: Subscription
    watchdog_s: float
    started: float
    keepalive_s: float = 0.0
    bound_s: float = 0.0
    check_s: float = CONFIRM_CHECK_MAX_S
    pump: asyncio.Task[None] | None = None
    handles: dict[int, tuple[str, str]] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    confirmed_at: float | None = None
    """``last_publish_at`` of the last publish response turned into confirmations."""
    stale: bool = False
    """No publish response within ``bound_s``: the values were marked stale."""


def _queued(sub: Subscription) -> int:
    """Notifications received but not yet taken by the pump (asyncua's iterator queue)."""
    queue = sub._event_queue  # asyncua 2.1 offers no public length
    return 0 if queue is None else queue.qsize()


def _node_of(item: _Item) -> ua.NodeId:
    """The resolved node of an item that is being monitored (unresolved items never are)."""
    assert item.node_id is not None  # noqa: S101 - filtered in _start_subscriptions
    return item.node_id


def _bad(device: str, tag: str, reason: str) -> Reading:
    return Reading(
        device=device,
        tag=tag,
        value=None,
        ts=time.time(),
        mono=time.monotonic(),
        quality=Quality.BAD,
        reason=reason,
    )


class OpcuaLink:
    """All devices configured on one endpoint with the same session settings."""

    def __init__(self, devices: Sequence[OpcuaDevice]) -> None:
        if not devices:
            raise ValueError("a link needs at least one device")
        self._devices = tuple(devices)
        self._lead = devices[0]
        self._client: Client | None = None
        self._items: list[_Item] = []
        self._subs: list[_SubState] = []
        self._clocks: dict[str, GridClock] = {}
        self._pending: list[tuple[str, Reading]] = []
        self._confirmations: list[Confirmation] = []
        self._last: dict[tuple[str, str], Reading] = {}
        self._changed_at: dict[str, float] = {}
        # Arrival time shared by the notifications handled in one event-loop step (one
        # publish response): the buffer stores a batch with one time as one frame.
        self._stamp: tuple[float, float] | None = None
        self._wake = asyncio.Event()
        self._lost: str | None = None
        self._diag = {d.name: DeviceDiagnostics() for d in devices}
        self._metadata: dict[str, dict[str, dict[str, Any]]] = {d.name: {} for d in devices}
        self._filter_warned: set[tuple[str, str]] = set()
        self.dropped = 0

    # -- Link protocol -----------------------------------------------------
    @property
    def name(self) -> str:
        """The endpoint URL."""
        return self._lead.endpoint

    @property
    def device_names(self) -> tuple[str, ...]:
        """Devices served by this session."""
        return tuple(d.name for d in self._devices)

    def diagnostics(self) -> Mapping[str, DeviceDiagnostics]:
        """Per-device diagnostics (requests, errors, read round trips, skipped poll cycles)."""
        return self._diag

    def tag_metadata(self) -> Mapping[str, Mapping[str, Mapping[str, Any]]]:
        """``device -> tag -> metadata`` (``node_id``, ``unit``, ``eu_range``), set on connect."""
        return self._metadata

    async def connect(self) -> None:
        """Open the session, resolve addresses, create subscriptions and poll schedules.

        Raises:
            DeviceUnavailable: When the session cannot be established.
        """
        self._lost = None
        self._pending.clear()
        self._confirmations.clear()
        self._last.clear()
        self._wake.clear()
        self._client = await open_client(self._lead, on_lost=self._on_lost)
        try:
            await self._resolve()
            await self._start_subscriptions()
        except TRANSPORT_ERRORS as exc:
            await self.close()
            raise DeviceUnavailable(
                f"{self.name}: setup failed: {type(exc).__name__}: {exc}"
            ) from exc
        now = time.monotonic()
        self._clocks = {
            d.name: GridClock(d.interval_ms / 1000, now=now)
            for d in self._devices
            if d.mode is Mode.POLL
        }
        for item in self._items:
            if item.error and self._device(item.device).mode is Mode.SUBSCRIBE:
                self._pending.append((item.device, _bad(item.device, item.tag.name, item.error)))
        for dev in self._devices:
            diag = self._diag[dev.name]
            if dev.mode is Mode.SUBSCRIBE:
                # Nothing confirmed on this session yet; the first publish response will.
                diag.confirmed_by = ConfirmedBy.LAPSED
                diag.confirmed_until_ts = None

    async def close(self) -> None:
        """Stop pumps and close the session; never raises."""
        subs, self._subs = self._subs, []
        for state in subs:
            if state.pump is not None:
                state.pump.cancel()
        for state in subs:
            if state.pump is not None:
                with contextlib.suppress(BaseException):
                    await state.pump
        client, self._client = self._client, None
        if client is not None:
            await close_client(client, self._lead.timeout_ms / 1000)
        for dev in self._devices:
            diag = self._diag[dev.name]
            if dev.mode is Mode.SUBSCRIBE:
                diag.confirmed_by = ConfirmedBy.LAPSED

    async def poll(self) -> PollResult:
        """Wait for notifications, confirmations or the next poll tick; return what is due.

        Raises:
            DeviceUnavailable: Session lost, or a subscription silent beyond ``watchdog_s``.
        """
        while True:
            if self._lost is not None:
                raise DeviceUnavailable(self._lost)
            now = time.monotonic()
            due = [name for name, clock in self._clocks.items() if clock.next_due() <= now]
            if due:
                return await self._read_due(due, now)
            deadline = self._check_subscriptions(now)
            if self._pending or self._confirmations:
                return self._drain()
            deadline = min(deadline, self._check_watchdog(now))
            if self._clocks:
                deadline = min(deadline, *(c.next_due() for c in self._clocks.values()))
            # A timer sets the wake event instead of asyncio.wait_for: on Python < 3.12
            # wait_for can swallow a cancellation that races with the event being set
            # (gh-86296), which under a steady notification stream made the link task
            # impossible to cancel. It is also cheaper (no extra task per wait).
            self._wake.clear()
            timer = asyncio.get_running_loop().call_later(max(0.0, deadline - now), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()

    # -- internals ---------------------------------------------------------
    def _device(self, name: str) -> OpcuaDevice:
        return next(d for d in self._devices if d.name == name)

    async def _on_lost(self, exc: Exception) -> None:
        self._lost = f"{self.name}: session lost ({type(exc).__name__}: {exc})".replace(" ()", "")
        self._wake.set()

    def _arrival(self) -> tuple[float, float]:
        """(wall, monotonic) arrival time, the same for every notification of this step."""
        stamp = self._stamp
        if stamp is None:
            stamp = self._stamp = (time.time(), time.monotonic())
            asyncio.get_running_loop().call_soon(self._clear_stamp)
        return stamp

    def _clear_stamp(self) -> None:
        self._stamp = None

    def _drain(self) -> PollResult:
        by_device: dict[str, list[Reading]] = defaultdict(list)
        for device, reading in self._pending:
            by_device[device].append(reading)
        self._pending = []
        result = PollResult(batches=list(by_device.values()), confirmations=self._confirmations)
        self._confirmations = []
        now = time.time()
        for device in by_device:
            self._diag[device].last_good_ts = now
        return result

    def _check_subscriptions(self, now: float) -> float:
        """Turn new publish responses into confirmations; mark silent subscriptions stale.

        Returns the time of the next look.
        """
        deadline = now + 3600.0
        for state in self._subs:
            last = state.sub.last_publish_at
            if last is not None and (state.confirmed_at is None or last > state.confirmed_at):
                if _queued(state.sub):
                    continue  # the pump wakes us once it has taken the response's changes
                self._confirm(state, last, now)
            elif (
                not state.stale
                and state.confirmed_at is not None
                and now >= state.confirmed_at + state.bound_s
            ):
                self._mark_stale(state, now)
            deadline = min(deadline, now + state.check_s)
            if not state.stale and state.confirmed_at is not None:
                deadline = min(deadline, state.confirmed_at + state.bound_s)
        return deadline

    def _confirm(self, state: _SubState, publish_at: float, now: float) -> None:
        """One publish response (arrived at monotonic ``publish_at``) confirms the values."""
        state.confirmed_at = publish_at
        ts = time.time() - (now - publish_at)
        until = ts + state.bound_s
        if state.stale:
            # Values were marked stale: the response vouches for them again. Re-send the
            # last reading of every item (its change, if the response carried one, is in
            # the cache already) as the current value.
            state.stale = False
            wall = time.time()
            for device, tag in state.handles.values():
                last = self._last.get((device, tag))
                if last is not None:
                    self._pending.append((device, last._replace(ts=wall, mono=now)))
            log.info("Subscription speaks again, values confirmed link=%s", self.name)
        for device in state.devices:
            changed = self._changed_at.get(device, float("-inf")) >= publish_at
            self._diag[device].confirm(ts, changed=changed, until=until)
            self._confirmations.append(Confirmation(device=device, ts=ts, mono=publish_at))

    def _mark_stale(self, state: _SubState, now: float) -> None:
        """The subscription missed its keepalive bound: its values are no longer confirmed."""
        state.stale = True
        silent_s = now - (state.confirmed_at or now)
        reason = (
            f"not confirmed: no publish response for {silent_s:.1f} s "
            f"(keepalive bound {state.bound_s:.1f} s)"
        )
        ts = time.time()
        for device, tag in state.handles.values():
            self._pending.append(
                (
                    device,
                    Reading(
                        device=device,
                        tag=tag,
                        value=None,
                        ts=ts,
                        mono=now,
                        quality=Quality.STALE,
                        reason=reason,
                    ),
                )
            )
        for device in state.devices:
            self._diag[device].confirmed_by = ConfirmedBy.LAPSED
            self._diag[device].record_error("keepalive")
        log.warning(
            "Subscription silent beyond its keepalive bound, values stale link=%s "
            "silent_s=%.1f bound_s=%.1f",
            self.name,
            silent_s,
            state.bound_s,
        )

    def _check_watchdog(self, now: float) -> float:
        """Raise when a subscription is silent too long; else return the next deadline."""
        deadline = now + 3600.0
        for state in self._subs:
            last = max(state.started, state.sub.last_publish_at or 0.0)
            limit = last + state.watchdog_s
            if now >= limit:
                for dev in {d for d, _ in state.handles.values()}:
                    self._diag[dev].record_error("watchdog")
                raise DeviceUnavailable(
                    f"{self.name}: connected but silent: no data change and no keepalive for "
                    f"{state.watchdog_s:g} s on subscription {state.sub.subscription_id}; "
                    "rebuilding the session"
                )
            deadline = min(deadline, limit)
        return deadline

    async def _resolve(self) -> None:
        assert self._client is not None  # noqa: S101 - connect() sets it first
        items = [_Item(device=d.name, tag=t) for d in self._devices for t in d.tags]
        by_ref = [i for i in items if i.tag.node is not None]
        by_path = [i for i in items if i.tag.browse_path is not None]
        refs = await resolve_node_refs(self._client, [i.tag.node for i in by_ref])  # type: ignore[misc]
        paths = await resolve_browse_paths(self._client, [i.tag.browse_path for i in by_path])  # type: ignore[misc]
        for item, res in zip([*by_ref, *by_path], [*refs, *paths], strict=True):
            item.node_id, item.error = res.node_id, res.error
        resolved = [i.node_id for i in items if i.node_id is not None]
        meta = await read_metadata(self._client, resolved)
        for item in items:
            entry: dict[str, Any] = {"address": item.tag.address}
            if item.node_id is not None:
                entry["node_id"] = item.node_id.to_string()
                entry.update(meta.get(item.node_id, {}))
            else:
                entry["error"] = item.error
            self._metadata[item.device][item.tag.name] = entry
        self._items = items

    async def _start_subscriptions(self) -> None:
        assert self._client is not None  # noqa: S101
        groups: dict[int, list[_Item]] = defaultdict(list)
        watchdogs: dict[int, float] = {}
        for item in self._items:
            dev = self._device(item.device)
            if dev.mode is Mode.SUBSCRIBE and item.node_id is not None:
                groups[dev.interval_ms].append(item)
                watchdogs[dev.interval_ms] = min(
                    watchdogs.get(dev.interval_ms, dev.watchdog_s), dev.watchdog_s
                )
        for interval_ms, items in groups.items():
            params = subscription_parameters(interval_ms, watchdogs[interval_ms])
            sub = await self._client.create_subscription(
                params, None, queue_maxsize=SUBSCRIPTION_QUEUE_MAX
            )
            # A server may revise the interval/keepalive upwards; never call a subscription
            # silent before the server was even due to send a keepalive.
            revised = sub.parameters
            due_s = revised.RequestedPublishingInterval * revised.RequestedMaxKeepAliveCount / 1000
            watchdog_s = max(watchdogs[interval_ms], 1.5 * due_s)
            if watchdog_s > watchdogs[interval_ms]:
                log.warning(
                    "Server revised subscription timing, watchdog raised link=%s watchdog_s=%.1f",
                    self.name,
                    watchdog_s,
                )
            keepalive_s = due_s
            state = _SubState(
                sub=sub,
                watchdog_s=watchdog_s,
                started=time.monotonic(),
                keepalive_s=keepalive_s,
                bound_s=keepalive_bound_s(keepalive_s),
                check_s=min(
                    max(revised.RequestedPublishingInterval / 1000, 0.05), CONFIRM_CHECK_MAX_S
                ),
            )
            await self._monitor(state, items, interval_ms)
            state.devices = tuple(dict.fromkeys(dev for dev, _ in state.handles.values()))
            state.pump = asyncio.create_task(self._pump(state), name=f"opcua-pump {self.name}")
            self._subs.append(state)

    async def _monitor(self, state: _SubState, items: list[_Item], interval_ms: int) -> None:
        handles = {k + 1: item for k, item in enumerate(items)}
        results = await state.sub.create_monitored_items(
            [
                monitored_item_request(h, _node_of(item), item.tag, interval_ms, with_filter=True)
                for h, item in handles.items()
            ]
        )
        retry: dict[int, _Item] = {}
        for (handle, item), res in zip(handles.items(), results, strict=True):
            if isinstance(res, ua.StatusCode):
                if res.value in _FILTER_REJECTED and item.tag.deadband is not None:
                    retry[handle + len(handles)] = item
                    if (item.device, item.tag.name) not in self._filter_warned:
                        self._filter_warned.add((item.device, item.tag.name))
                        log.warning(
                            "Deadband filter rejected, monitoring without it "
                            "device=%s tag=%s status=%s",
                            item.device,
                            item.tag.name,
                            res.name,
                        )
                    continue
                item.error = f"{res.name} ({item.tag.address})"
                self._diag[item.device].record_error("address")
                continue
            state.handles[handle] = (item.device, item.tag.name)
        if retry:
            results = await state.sub.create_monitored_items(
                [
                    monitored_item_request(
                        h, _node_of(item), item.tag, interval_ms, with_filter=False
                    )
                    for h, item in retry.items()
                ]
            )
            for (handle, item), res in zip(retry.items(), results, strict=True):
                if isinstance(res, ua.StatusCode):
                    item.error = f"{res.name} ({item.tag.address})"
                else:
                    state.handles[handle] = (item.device, item.tag.name)

    async def _pump(self, state: _SubState) -> None:
        """Move notifications of one subscription into the link's pending list, in order."""
        pending_max = PENDING_MAX
        handles = state.handles
        async for event in state.sub:
            if type(event) is DataChangeEvent:
                target = handles.get(event.data.subscription_data.client_handle or 0)
                if target is None:
                    continue
                device, tag = target
                if len(self._pending) >= pending_max:
                    self.dropped += 1
                    self._diag[device].record_error("queue_full")
                    continue
                wall, now = self._arrival()
                reading = reading_from(device, tag, event.data.monitored_item.Value, wall, now)
                self._pending.append((device, reading))
                self._last[target] = reading
                self._changed_at[device] = now
                self._diag[device].last_change_ts = reading.ts
                self._wake.set()
            elif isinstance(event, StatusChangeEvent):
                code = event.notification.Status
                if code is not None and not code.is_good():
                    self._lost = f"{self.name}: subscription status {status_name(code.value)}"
                    self._wake.set()
                    return

    async def _read_due(self, due: list[str], now: float) -> PollResult:
        """Read every tag of the due poll-mode devices in one Read call."""
        assert self._client is not None  # noqa: S101
        for name in due:
            self._diag[name].skipped_cycles += self._clocks[name].advance(now)
        items = [i for i in self._items if i.device in due]
        readable = [i for i in items if i.node_id is not None]
        values: list[ua.DataValue] = []
        if readable:
            params = ua.ReadParameters()
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            for item in readable:
                rv = ua.ReadValueId()
                rv.NodeId = item.node_id
                rv.AttributeId = AttributeIds.Value
                params.NodesToRead.append(rv)
            start = time.monotonic()
            try:
                values = await self._client.uaclient.read(params)
            except TRANSPORT_ERRORS as exc:
                for name in due:
                    self._diag[name].record_error("read")
                raise DeviceUnavailable(
                    f"{self.name}: read failed: {type(exc).__name__}: {exc}"
                ) from exc
            rtt_ms = (time.monotonic() - start) * 1000
            for name in due:
                self._diag[name].requests += 1
                self._diag[name].record_rtt(rtt_ms)
        ts, mono = time.time(), time.monotonic()
        by_device: dict[str, list[Reading]] = {name: [] for name in due}
        value_of = dict(
            zip((id(i) for i in readable), values, strict=False)
        )  # short answer -> "no value"
        for item in items:
            dv = value_of.get(id(item))
            if dv is None:
                by_device[item.device].append(
                    _bad(item.device, item.tag.name, item.error or "no value")
                )
            else:
                by_device[item.device].append(
                    reading_from(item.device, item.tag.name, dv, ts, mono)
                )
        for name in due:
            self._diag[name].last_good_ts = time.time()
        return PollResult(batches=[b for b in by_device.values() if b])
