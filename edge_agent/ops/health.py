"""Process and host health metrics for telemetry and ``edge-agent status``.

:class:`HealthCollector` gathers what a technician or a fleet dashboard needs
to tell a healthy gateway from a dying one: agent version and uptime, the
agent's CPU share and resident memory, free space where the buffer lives,
SoC temperature and whether the wall clock is NTP-synchronised. The runtime
plugs its own figures into named *slots* (buffer stats, uplink state,
per-device diagnostics, the event catalogue's counters, pipeline queue figures) through
:meth:`HealthCollector.provide`; the collector calls those providers on each
:meth:`~HealthCollector.collect`.

What it does not do: it publishes nothing, keeps no history, and does not
decide what is alarming (the dashboard does). It does not read
``boot_time()``, which jumps when an RTC-less Pi syncs its clock.

Guarantees:

* :meth:`~HealthCollector.collect` never blocks on purpose. CPU is computed
  from ``cpu_times()`` deltas over a trailing window (default 60 s, primed in
  the constructor), never by sleeping for an interval. The figures come from
  :mod:`edge_agent.ops.procstat` (the kernel's files; no psutil). Because of the
  window, several callers (the status file every 2 s, health telemetry every
  minute) all get a meaningful figure instead of "since whoever called last".
  The rest are single syscalls or small
  sysfs/procfs reads: about 0.2 ms per call on the development VM (see
  ``docs/bench-operations.md``), so it is safe to call on the event loop.
* It never raises for a missing metric: a failing probe yields ``None`` and a
  failing slot provider yields ``None`` (and is logged once per provider).
* The returned dict matches the ``data`` part of ``schemas/health.schema.json``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from edge_agent import __version__
from edge_agent.ops.clock import ClockStatus, clock_status
from edge_agent.ops.procstat import SelfProcess, disk_usage, hwmon_temperatures

log = logging.getLogger("edge_agent.ops.health")

__all__ = ["SLOTS", "THERMAL_ZONE0", "HealthCollector", "cpu_temperature"]

#: Names of the figures the runtime provides; always present in the payload (``None`` if unset).
SLOTS = ("buffer", "uplink", "devices", "events", "pipeline")

THERMAL_ZONE0 = Path("/sys/class/thermal/thermal_zone0/temp")

# hwmon sensor names that mean "the SoC/CPU", in order of preference. Any other
# hwmon sensor (an I2C RTC like the DS3231, a board sensor) is *not* the CPU,
# hence the fallback to thermal_zone0.
_CPU_SENSORS = ("cpu_thermal", "cpu-thermal", "soc_thermal", "coretemp", "k10temp", "zenpower")

SlotProvider = Callable[[], Any]


def _read_thermal_zone(path: Path) -> float | None:
    """Millidegrees Celsius from a sysfs thermal zone, as degrees; ``None`` if absent or bogus."""
    try:
        raw = path.read_text(encoding="ascii").strip()
        value = int(raw) / 1000.0
    except (OSError, ValueError):
        return None
    # Some boards report 0 or absurd values when the sensor is not wired.
    if not -40.0 <= value <= 150.0 or value == 0.0:
        return None
    return round(value, 1)


def cpu_temperature(
    *,
    sensors: Callable[[], Mapping[str, Iterable[Any]]] | None = None,
    thermal_zone: Path = THERMAL_ZONE0,
) -> float | None:
    """SoC/CPU temperature in °C, or ``None`` when the board reports none.

    Args:
        sensors: Replacement for :func:`~edge_agent.ops.procstat.hwmon_temperatures` (tests).
        thermal_zone: sysfs file read when hwmon has no CPU sensor.
    """
    probe = sensors or hwmon_temperatures
    readings: Mapping[str, Iterable[Any]] = {}
    try:
        readings = probe()
    except (OSError, RuntimeError, ValueError):
        readings = {}
    for name in _CPU_SENSORS:
        for entry in readings.get(name, ()):
            current = getattr(entry, "current", None)
            if isinstance(current, int | float) and current > 0:
                return round(float(current), 1)
    return _read_thermal_zone(thermal_zone)


class HealthCollector:
    """Collects one health sample on demand; cheap enough for the event loop.

    Args:
        state_dir: Directory holding the buffer; its filesystem's free space is reported.
        version: Agent version reported (default: the package version).
        clock: Replacement for :func:`edge_agent.ops.clock.clock_status` (tests).
        temperature: Replacement for :func:`cpu_temperature` (tests).
        monotonic: Monotonic clock for uptime (tests).
        process: The process to measure (default: this one).
        cpu_window_s: Trailing window over which ``cpu_percent`` is averaged.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        version: str = __version__,
        clock: Callable[[], ClockStatus] = clock_status,
        temperature: Callable[[], float | None] = cpu_temperature,
        monotonic: Callable[[], float] = time.monotonic,
        process: SelfProcess | None = None,
        cpu_window_s: float = 60.0,
    ) -> None:
        if cpu_window_s <= 0:
            raise ValueError("cpu_window_s must be > 0")
        self.state_dir = Path(state_dir)
        self.version = version
        self._clock = clock
        self._temperature = temperature
        self._monotonic = monotonic
        self._started = monotonic()
        self._process = process or SelfProcess()
        self._providers: dict[str, SlotProvider] = {}
        self._failed_providers: set[str] = set()
        self.cpu_window_s = cpu_window_s
        # (monotonic time, CPU seconds used) per collect(); the first one primes the window.
        self._cpu_samples: deque[tuple[float, float]] = deque(maxlen=4096)
        # If this fails, CPU is measured from the first successful sample instead.
        with contextlib.suppress(OSError, ValueError):
            self._cpu_samples.append((self._started, self._cpu_seconds()))

    def _cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def _cpu_percent(self, cpu_s: float) -> float:
        """Average CPU (% of one core) over the trailing window, ending with this sample."""
        now = self._monotonic()
        samples = self._cpu_samples
        samples.append((now, cpu_s))
        # Keep as reference the newest sample at least one window old (or the oldest).
        while len(samples) > 1 and samples[1][0] <= now - self.cpu_window_s:
            samples.popleft()
        t0, c0 = samples[0]
        if now - t0 <= 0:
            return 0.0
        return round(max(0.0, 100.0 * (cpu_s - c0) / (now - t0)), 1)

    def provide(self, slot: str, provider: SlotProvider) -> None:
        """Register the callable filling one of :data:`SLOTS` (``buffer``, ``uplink``, ...).

        The provider must be cheap and return JSON-ready data.

        Raises:
            ValueError: ``slot`` is not one of :data:`SLOTS`.
        """
        if slot not in SLOTS:
            raise ValueError(f"unknown health slot {slot!r}; expected one of {', '.join(SLOTS)}")
        self._providers[slot] = provider

    def uptime_s(self) -> float:
        """Seconds since the collector (the agent) started, from the monotonic clock."""
        return round(self._monotonic() - self._started, 3)

    def _process_figures(self) -> tuple[float | None, int | None]:
        try:
            with self._process.oneshot():
                cpu_s = self._cpu_seconds()
                rss = int(self._process.memory_info().rss)
        except (OSError, ValueError, IndexError):
            return None, None
        return self._cpu_percent(cpu_s), rss

    def _disk_free(self) -> tuple[int | None, int | None]:
        try:
            free, total = disk_usage(self.state_dir)
        except OSError:
            return None, None
        return int(free), int(total)

    def _slot(self, slot: str) -> Any:
        provider = self._providers.get(slot)
        if provider is None:
            return None
        try:
            value = provider()
        except Exception:
            if slot not in self._failed_providers:
                self._failed_providers.add(slot)
                log.exception("Health slot provider failed slot=%s", slot)
            return None
        self._failed_providers.discard(slot)
        return value

    def collect(self, *, slots: bool = True) -> dict[str, Any]:
        """Take one sample: the ``data`` part of a health message.

        Args:
            slots: Call the slot providers; ``False`` leaves every slot ``None``
                (the status file reports those parts itself).

        Returns:
            A JSON-ready dict with ``version``, ``pid``, ``uptime_s``,
            ``cpu_percent``, ``rss_bytes``, ``disk_free_bytes``,
            ``disk_total_bytes``, ``cpu_temp_c``, ``clock_synced``,
            ``clock_source`` and every slot of :data:`SLOTS`
            (``None`` when no provider is registered).
        """
        cpu, rss = self._process_figures()
        free, total = self._disk_free()
        try:
            clock = self._clock()
            synced, source = clock.synced, clock.source.value
        except Exception:
            log.exception("Clock status probe failed")
            synced, source = None, "none"
        data: dict[str, Any] = {
            "version": self.version,
            "pid": os.getpid(),
            "uptime_s": self.uptime_s(),
            "cpu_percent": cpu,
            "rss_bytes": rss,
            "disk_free_bytes": free,
            "disk_total_bytes": total,
            "cpu_temp_c": self._temperature(),
            "clock_synced": synced,
            "clock_source": source,
        }
        for slot in SLOTS:
            data[slot] = self._slot(slot) if slots else None
        return data
