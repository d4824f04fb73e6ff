"""In-process simulator host: machines + clock + front ends + truth, in one context manager.

:class:`SimulatorHost` builds one :class:`~simulators.model.Machine` per
scenario machine, starts the requested front ends (Modbus TCP, Modbus RTU on
a serial port or pty, OPC-UA) and, with a real clock, a tick task that
advances every machine to the clock's time every ``tick_s`` wall seconds and
publishes the new values to OPC-UA. With a :class:`~simulators.clock.ManualClock`
there is no tick task: a test calls :meth:`SimulatorHost.advance` and the
front ends show the new instant immediately (no waiting in real time).

Per-machine handles (:meth:`SimulatorHost.machine`) inject faults and
outages. The scenario's OPC-UA publish stalls are switched on and off at each
publish (each tick, or each :meth:`SimulatorHost.advance`) and written to the
truth file as ``opcua_stall`` records. :meth:`SimulatorHost.ready_info` is what ``edge-agent-sim run
--ready-file`` writes. Guarantees: on exit every front end is stopped,
open intervals are written to the truth file with ``"open": true`` and the
file is closed. This module does not parse command lines or handle signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from simulators.clock import ManualClock, ScaledClock, SimClock
from simulators.device import MachineDevice
from simulators.modbus_rtu import ModbusRtuServer
from simulators.modbus_tcp import ModbusTcpServer
from simulators.model import Machine, Snapshot
from simulators.scenario import Action, OutageMode, Scenario, load_scenario
from simulators.truth import TruthWriter

if TYPE_CHECKING:
    from simulators.opcua_server import OpcUaSecurity, OpcUaServer

log = logging.getLogger("simulators.host")


class MachineHandle:
    """Test/demo control of one running machine."""

    def __init__(self, host: SimulatorHost, device: MachineDevice) -> None:
        self._host = host
        self.device = device
        self.machine: Machine = device.machine

    @property
    def id(self) -> str:
        """Machine id from the scenario."""
        return self.machine.spec.id

    @property
    def unit_id(self) -> int:
        """Modbus unit id."""
        return self.machine.spec.unit_id

    def snapshot(self) -> Snapshot:
        """The machine's values as of the host's last advance."""
        return self.device.snapshot()

    def force_fault(self, code: int, duration_s: float) -> None:
        """Go down with fault ``code`` for ``duration_s`` sim seconds, starting now."""
        self._host.sync()
        self.machine.force_fault(code, duration_s)
        self._host.publish_soon()

    def force_state(self, action: Action, duration_s: float, reason: str = "") -> None:
        """Apply a scripted action now (idle, planned_stop, power_off, plc_restart)."""
        self._host.sync()
        self.machine.force_state(action, duration_s, reason)
        self._host.publish_soon()

    def set_outage(self, on: bool, mode: OutageMode | str = OutageMode.SILENT) -> None:
        """Start (until cleared) or end a comms outage of this machine, now."""
        self._host.sync()
        self.machine.set_outage(on, OutageMode(mode))
        self._host.publish_soon()


class SimulatorHost:
    """Run a scenario in-process.

    Args:
        scenario: A loaded scenario, or a bundled name / file path.
        speed: Sim seconds per wall second (ignored when ``clock`` is given).
        seed: Random seed; same seed + scenario + clock steps -> same truth.
        clock: Clock to use; default a :class:`ScaledClock` at ``speed``.
        modbus_tcp: ``(host, port)`` to serve Modbus TCP on (port 0 = free port), or None.
        opcua: ``(host, port)`` to serve OPC-UA on, or None.
        rtu_port: Serial device / pty path to serve Modbus RTU on, or None.
        rtu_baudrate: Baud rate used for RTU inter-frame timing.
        truth_path: JSON Lines ground-truth file, or None (records stay in memory).
        state_dir: Directory for OPC-UA certificates (created if missing).
        opcua_security: OPC-UA security options (default: None policy only).
        tick_s: Wall seconds between model advances with a real clock.
        connection_log: JSON Lines file logging Modbus TCP connections (see
            :class:`~simulators.modbus_tcp.ModbusTcpServer`), or None.
    """

    def __init__(
        self,
        scenario: Scenario | str,
        *,
        speed: float = 1.0,
        seed: int = 1,
        clock: SimClock | None = None,
        modbus_tcp: tuple[str, int] | None = None,
        opcua: tuple[str, int] | None = None,
        rtu_port: str | None = None,
        rtu_baudrate: int = 19200,
        truth_path: str | Path | None = None,
        state_dir: str | Path | None = None,
        opcua_security: OpcUaSecurity | None = None,
        tick_s: float = 0.1,
        connection_log: str | Path | None = None,
    ) -> None:
        self.scenario = load_scenario(scenario) if isinstance(scenario, str) else scenario
        self.clock: SimClock = clock if clock is not None else ScaledClock(speed)
        self._owns_clock = clock is None
        self.seed = seed
        self.truth = TruthWriter(truth_path)
        self._manual = isinstance(self.clock, ManualClock)
        self._tick_s = tick_s
        self._modbus_addr = modbus_tcp
        self._opcua_addr = opcua
        self._rtu_path = rtu_port
        self._rtu_baudrate = rtu_baudrate
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._opcua_security = opcua_security
        self._connection_log = connection_log
        self.devices: dict[str, MachineDevice] = {}
        for spec in self.scenario.machines:
            m = Machine(spec, seed=seed, wall_ts=self.clock.wall_ts, record=self.truth.record)
            self.devices[spec.id] = MachineDevice(m, busy_seed=seed)
        self._handles = {k: MachineHandle(self, d) for k, d in self.devices.items()}
        self.modbus: ModbusTcpServer | None = None
        self.rtu: ModbusRtuServer | None = None
        self.opcua: OpcUaServer | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._stall_start: float | None = None

    # ----- accessors ----------------------------------------------------------------

    def machine(self, machine_id: str) -> MachineHandle:
        """The handle of one machine (KeyError for an unknown id)."""
        return self._handles[machine_id]

    @property
    def machines(self) -> list[MachineHandle]:
        """All machine handles in scenario order."""
        return list(self._handles.values())

    @property
    def modbus_port(self) -> int:
        """Bound Modbus TCP port (RuntimeError if not serving Modbus TCP)."""
        if self.modbus is None:
            raise RuntimeError("Modbus TCP front end not started")
        return self.modbus.port

    @property
    def opcua_endpoint(self) -> str:
        """OPC-UA endpoint URL (RuntimeError if not serving OPC-UA)."""
        if self.opcua is None:
            raise RuntimeError("OPC-UA front end not started")
        return self.opcua.endpoint

    def ready_info(self) -> dict[str, Any]:
        """Bound addresses, as written to ``--ready-file``."""
        info: dict[str, Any] = {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "speed": self.clock.speed,
            "machines": {d.spec.id: {"unit_id": d.spec.unit_id} for d in self.devices.values()},
        }
        if self.modbus is not None and self._modbus_addr is not None:
            info["modbus_tcp"] = {"host": self._modbus_addr[0], "port": self.modbus.port}
        if self.opcua is not None:
            info["opcua"] = {"endpoint": self.opcua.endpoint, "port": self.opcua.port}
        if self.rtu is not None:
            info["modbus_rtu"] = {"port": self.rtu.path, "baudrate": self._rtu_baudrate}
        return info

    # ----- time ---------------------------------------------------------------------

    def sync(self) -> None:
        """Advance every machine to the clock's current time."""
        now = self.clock.now()
        for d in self.devices.values():
            d.machine.advance_to(now)

    async def advance(self, dt: float) -> None:
        """Manual clock only: move sim time by ``dt``, advance models, publish to OPC-UA."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError("advance() needs a ManualClock")
        self.clock.advance(dt)
        self.sync()
        await self._publish()

    def publish_soon(self) -> None:
        """Publish to OPC-UA after an injection (manual clock: now, in a task; else next tick)."""
        if self._manual and self.opcua is not None:
            task = asyncio.get_running_loop().create_task(self._publish())
            self._tasks.add(task)  # keep a reference until done (asyncio holds weak ones)
            task.add_done_callback(self._tasks.discard)

    async def _publish(self) -> None:
        if self.opcua is not None:
            self._switch_stall(self.clock.now())
            await self.opcua.publish()

    def _switch_stall(self, now: float, *, closing: bool = False) -> None:
        """Start or end a publish stall of the OPC-UA server; record each finished one."""
        if self.opcua is None:
            return
        stalled = self.scenario.opcua.stalled(now) and not closing
        if stalled and self._stall_start is None:
            self._stall_start = now
            log.info("OPC-UA publishing stalled t_s=%.3f", now)
        elif not stalled and self._stall_start is not None:
            start, self._stall_start = self._stall_start, None
            rec: dict[str, Any] = {
                "type": "opcua_stall",
                "start_s": round(start, 6),
                "end_s": round(now, 6),
                "start_ts": round(self.clock.wall_ts(start), 6),
                "end_ts": round(self.clock.wall_ts(now), 6),
            }
            if closing:
                rec["open"] = True
            self.truth.record(rec)
            log.info("OPC-UA publishing resumed t_s=%.3f", now)
        self.opcua.stalled = stalled

    async def restart_opcua(self) -> None:
        """Stop the OPC-UA server and start a fresh one on the same port (reconnect tests)."""
        if self.opcua is None:
            raise RuntimeError("OPC-UA front end not started")
        await self.opcua.restart()

    async def _tick(self) -> None:
        while True:
            self.sync()
            await self._publish()
            await asyncio.sleep(self._tick_s)

    # ----- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Start front ends, then sim time and the tick task."""
        by_unit = {d.spec.unit_id: d for d in self.devices.values()}
        try:
            # OPC-UA first: it takes seconds, the others are instant.
            if self._opcua_addr is not None:
                from simulators.opcua_server import OpcUaServer  # heavy import

                self.opcua = OpcUaServer(
                    list(self.devices.values()),
                    host=self._opcua_addr[0],
                    port=self._opcua_addr[1],
                    state_dir=self._state_dir,
                    security=self._opcua_security,
                    wall_ts=self.clock.wall_ts,
                )
                await self.opcua.start()
            if self._modbus_addr is not None:
                self.modbus = ModbusTcpServer(
                    by_unit, *self._modbus_addr, connection_log=self._connection_log
                )
                await self.modbus.start()
            if self._rtu_path is not None:
                self.rtu = ModbusRtuServer(by_unit, self._rtu_path, baudrate=self._rtu_baudrate)
                await self.rtu.start()
        except BaseException:
            await self.stop()
            raise
        if self._owns_clock and isinstance(self.clock, ScaledClock):
            # OPC-UA start-up takes seconds; sim time 0 is when everything listens.
            self.clock.reset()
        for d in self.devices.values():
            # Only now: front ends that read during start-up must not move sim time.
            d.set_time_source(self.clock.now)
        self.truth.record(
            {
                "type": "start",
                "scenario": self.scenario.name,
                "seed": self.seed,
                "speed": self.clock.speed,
                "epoch0_ts": round(self.clock.wall_ts(0.0), 3),
                "machines": [
                    {"id": d.spec.id, "unit_id": d.spec.unit_id} for d in self.devices.values()
                ],
            }
        )
        self.sync()
        await self._publish()
        if not self._manual:
            self._tick_task = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        """Stop everything and finish the truth file."""
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        for task in list(self._tasks):
            task.cancel()
        for fe in (self.modbus, self.rtu, self.opcua):
            if fe is not None:
                with contextlib.suppress(Exception):
                    await fe.stop()
        if not self._stopped:
            self._stopped = True
            self.sync()
            self._switch_stall(self.clock.now(), closing=True)
            for d in self.devices.values():
                d.machine.close()
            self.truth.record({"type": "stop", "t_s": round(self.clock.now(), 6)})
        self.truth.close()

    async def __aenter__(self) -> SimulatorHost:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
