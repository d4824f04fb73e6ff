"""Link supervision: one task per physical link, started, kept or replaced on reload.

:class:`LinkSupervisor` builds the links of the configured devices through the
driver registry and runs each in its own task with :func:`drivers.base.run_link`
(which owns reconnection and backoff). On reload, :meth:`LinkSupervisor.apply`
compares the new device configurations with the running ones *by value*: a link
whose devices are all unchanged keeps running (its connection, backoff and
diagnostics untouched); any other is replaced.

Guarantees:

* A TCP endpoint or serial port is never owned by two tasks: every link that is
  stopped is cancelled *and awaited* (``run_link`` closes its connection on the
  way out) before any new link task starts.
* A link task that fails (a driver bug: ``run_link`` only ever ends by
  cancellation) is logged with its traceback and reported by :meth:`LinkSupervisor.watch`,
  which the runtime supervises: the agent stops and systemd restarts it, rather
  than leaving devices silently unread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from drivers import registry
from drivers.base import DeviceConfig, DeviceDiagnostics, DriverSpec, Link, run_link
from drivers.reconnect import link_backoff
from edge_agent.backoff import Backoff
from edge_agent.model import ReadingSink

log = logging.getLogger("edge_agent.links")

# (protocol, sorted device names): what a link serves.
LinkKey = tuple[str, tuple[str, ...]]


@dataclass(slots=True)
class _Running:
    link: Link
    configs: tuple[DeviceConfig, ...]
    task: asyncio.Task[None]


class LinkFailed(RuntimeError):
    """A link task ended with an exception (``run_link`` only ends when cancelled)."""


class LinkSupervisor:
    """Runs one task per link; links are built by the protocol's driver.

    Args:
        sink: Where every link puts its readings and comms events.
        specs: The driver registry (tests inject their own drivers).
        backoff: Reconnect policy for new links; by default each link's own, from its
            devices' ``reconnect_min_s`` / ``reconnect_max_s`` (tests inject a fast one).
    """

    def __init__(
        self,
        sink: ReadingSink,
        *,
        specs: Callable[[], Mapping[str, DriverSpec]] = registry,
        backoff: Callable[[], Backoff] | None = None,
    ) -> None:
        self.sink = sink
        self._specs = specs
        self._backoff = backoff
        self._running: dict[LinkKey, _Running] = {}
        self._failed: asyncio.Queue[tuple[str, BaseException]] = asyncio.Queue()

    @property
    def names(self) -> list[str]:
        """Names of the running links (endpoint or port)."""
        return [r.link.name for r in self._running.values()]

    async def apply(self, devices: Mapping[str, DeviceConfig]) -> None:
        """Run links for ``devices``: unchanged ones keep running, others are replaced."""
        specs = self._specs()
        by_protocol: dict[str, list[DeviceConfig]] = {}
        for dev in devices.values():
            by_protocol.setdefault(dev.protocol, []).append(dev)
        wanted: dict[LinkKey, tuple[Link, tuple[DeviceConfig, ...]]] = {}
        for protocol, devs in by_protocol.items():
            for link in specs[protocol].build_links(devs):
                names = tuple(sorted(link.device_names))
                wanted[(protocol, names)] = (link, tuple(devices[d] for d in names))
        obsolete = [
            key
            for key, r in self._running.items()
            if key not in wanted or wanted[key][1] != r.configs
        ]
        stopping = [self._running.pop(key) for key in obsolete]
        for r in stopping:
            log.info("Stopping link link=%s", r.link.name)
        # Wait until each has closed its connection: its replacement may open the same
        # endpoint or serial port.
        await _cancel_and_wait([r.task for r in stopping])
        for key, (link, configs) in wanted.items():
            if key not in self._running:
                self._start(key, link, configs)

    def _start(self, key: LinkKey, link: Link, configs: tuple[DeviceConfig, ...]) -> None:
        tags = {c.name: c.tag_names for c in configs}
        backoff = self._backoff() if self._backoff is not None else link_backoff(configs)
        task = asyncio.create_task(
            run_link(link, self.sink, tags_by_device=tags, backoff=backoff),
            name=f"link:{link.name}",
        )
        task.add_done_callback(self._done)
        self._running[key] = _Running(link=link, configs=configs, task=task)

    def _done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or (exc := task.exception()) is None:
            return
        log.error("Link task failed task=%s", task.get_name(), exc_info=exc)
        self._failed.put_nowait((task.get_name(), exc))

    async def watch(self) -> None:
        """Raise :class:`LinkFailed` when a link task fails (the runtime supervises this)."""
        name, exc = await self._failed.get()
        raise LinkFailed(f"{name} failed: {exc!r}") from exc

    async def stop(self) -> None:
        """Stop every link and wait until each has closed its connection.

        The stopped links stay listed: health and the final status snapshot still read
        their diagnostics while the agent stops.
        """
        await _cancel_and_wait([r.task for r in self._running.values()])

    def diagnostics(self) -> dict[str, DeviceDiagnostics]:
        """Per-device diagnostics of every running link (live objects: read, do not mutate)."""
        out: dict[str, DeviceDiagnostics] = {}
        for r in self._running.values():
            out.update(r.link.diagnostics())
        return out


CANCEL_REPEAT_S = 0.5
CANCEL_ATTEMPTS = 40


async def _cancel_and_wait(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again if needed.

    One ``cancel()`` is not always enough: on Python < 3.12 ``asyncio.wait_for`` (which
    pymodbus awaits every response with) swallows a cancellation that arrives just as
    the awaited response does (CPython gh-86296), and the task polls on. Seen in the
    reload tests at 50 ms polling. So the cancellation is repeated until the task ends.
    """
    pending = set(tasks)
    for _ in range(CANCEL_ATTEMPTS):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=CANCEL_REPEAT_S)
    for task in pending:
        # Bounded: a link whose close() hangs must not hang the agent. Said loudly, since
        # its replacement may now share the endpoint with it.
        log.error("Link task did not stop task=%s", task.get_name())
