"""Gateway benchmark: forward every polled Modbus register through the whole agent to MQTT.

What it measures, for D devices x R holding registers (10x50, 50x100, 100x125,
then 100x125 again with a 5 s publish interval, and with ``publish = "none"`` as
the baseline cost of polling and buffering alone):
a load generator (a separate process, so its CPU is not counted) serves D
Modbus TCP devices on loopback ports whose registers change on every read; a
real ``edge-agent run`` process polls all of them every second with
``publish = "every"`` and a 1 s telemetry interval, through the SQLite buffer
and outbox, to a private Mosquitto; a paho subscriber counts the values that
arrive. After a warm-up, over a fixed window it reports values/s expected and
received, agent CPU (user+system) per received value, RSS and peak RSS
(VmHWM), Modbus requests per device per poll, and the lag of the newest
received sample. It also measures the pure telemetry engine in-process
(ingest, message build, JSON) to show the share of the per-value budget it
uses. Targets (issue #9): no falling behind at 12,500 values/s, < 10 us agent
CPU per value, < 60 MB RSS.

Sparkplug B (``payload = "sparkplug_b"``, issue #18): the same runs with the
agent as a Sparkplug Edge Node; the subscriber decodes the DDATA protobuf and
counts metrics (one per value) by their timestamps. ``python -m
benchmarks.bench_gateway ab`` alternates JSON and Sparkplug runs of 100 x 125
(three each, load average printed before each), for a fair comparison on a
shared machine.

It binds 127.0.0.1 only, stops everything it starts by PID, and bounds every
wait. ``EDGE_BENCH_SECONDS`` shortens or lengthens the measuring window
(default 12 s; warm-up is half of it). It does not tune the agent; the figures
are what the default configuration gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIZES = ((10, 50), (50, 100), (100, 125))
HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------- load generator
def _serve(devices: int, registers: int, stats_path: Path) -> None:
    """Child process: D Modbus TCP servers (unit id any) whose registers change on every read."""
    counts = [0] * devices
    # Open connections: closing their transports ends the handlers with EOF. Cancelling
    # them instead makes 3.11's StreamReaderProtocol print the CancelledError.
    handlers: dict[asyncio.StreamWriter, asyncio.Task[Any] | None] = {}

    def handler(index: int) -> Any:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            handlers[writer] = asyncio.current_task()
            try:
                while True:
                    header = await reader.readexactly(7)
                    tid, _pid, length, unit = struct.unpack(">HHHB", header)
                    pdu = await reader.readexactly(length - 1)
                    counts[index] += 1
                    fc = pdu[0]
                    if fc == 3 and len(pdu) == 5:
                        address, quantity = struct.unpack(">HH", pdu[1:5])
                        if quantity < 1 or quantity > 125 or address + quantity > registers:
                            body = bytes((fc | 0x80, 2))
                        else:
                            base = counts[index] * 7
                            values = [
                                (base + a) & 0xFFFF for a in range(address, address + quantity)
                            ]
                            body = struct.pack(f">BB{quantity}H", fc, 2 * quantity, *values)
                    else:
                        body = bytes((fc | 0x80, 1))
                    writer.write(struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()
                handlers.pop(writer, None)

        return handle

    async def main() -> None:
        servers = [await asyncio.start_server(handler(i), HOST, 0) for i in range(devices)]
        ports = [s.sockets[0].getsockname()[1] for s in servers]
        print(json.dumps(ports), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        while not stop.is_set():
            tmp = stats_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"requests": sum(counts), "t": time.time()}))
            tmp.replace(stats_path)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
        for server in servers:
            server.close()
        tasks = [t for t in handlers.values() if t is not None]
        for writer in list(handlers):
            writer.close()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

    asyncio.run(main())


# --------------------------------------------------------------------------- helpers
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout} s")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


def _vm_hwm_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def write_bytes(pid: int) -> int:
    """``write_bytes`` of ``/proc/<pid>/io``, summed over all the process's threads.

    The bytes the process caused to be sent to the storage layer: page-cache pages it
    dirtied, counted once per dirtying (file-system metadata and journal not included).
    """
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError(f"no write_bytes in /proc/{pid}/io")


def _requests(stats_path: Path) -> int:
    return _server_stats(stats_path)[0]


def _server_stats(stats_path: Path) -> tuple[int, float]:
    """(requests served so far, load-generator wall time when it wrote that count)."""
    raw = json.loads(stats_path.read_text())
    return int(raw["requests"]), float(raw["t"])


def count_values(data: dict[str, Any]) -> tuple[int, float, dict[int, int]]:
    """Values in one telemetry data part: (count, newest sample time, values per second).

    Seconds are buckets from x.5 to x+1.5 s, keyed by x: polls sit on the
    whole-second grid, so no poll's jitter decides which side of an edge it falls on.
    """
    n = 0
    newest = 0.0
    seconds: dict[int, int] = {}
    t0 = data.get("t0", 0)
    for dt_ms, values, *_issues in data.get("samples", []):
        n += len(values)
        newest = max(newest, t0 + dt_ms / 1000.0)
        second = t0 + (dt_ms - 500) // 1000
        seconds[second] = seconds.get(second, 0) + len(values)
    for windows in data.get("aggregates", {}).values():
        n += len(windows)
    return n, newest, seconds


def count_sparkplug(topic: str, raw: bytes) -> tuple[int, float, dict[int, int]]:
    """Values in one Sparkplug DDATA payload, bucketed like :func:`count_values`."""
    if "/DDATA/" not in topic:
        return 0, 0.0, {}
    from edge_agent.uplink.sparkplug import sparkplug_b_pb2

    payload = sparkplug_b_pb2.Payload.FromString(raw)
    n = 0
    newest = 0.0
    seconds: dict[int, int] = {}
    for metric in payload.metrics:
        ms = metric.timestamp
        n += 1
        newest = max(newest, ms / 1000.0)
        second = (ms - 500) // 1000
        seconds[second] = seconds.get(second, 0) + 1
    return n, newest, seconds


class _Counter:
    """paho subscriber (own thread) counting telemetry values and the newest sample time."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt  # type: ignore[import-untyped,unused-ignore]
        from paho.mqtt.enums import CallbackAPIVersion

        self.values = 0
        self.messages = 0
        self.newest = 0.0
        self.by_second: dict[int, int] = {}  # k -> values sampled in [k + 0.5, k + 1.5)
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-counter")
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(HOST, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("subscriber did not subscribe within 10 s")

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        if message.topic.startswith("spBv1.0/"):
            n, newest, seconds = count_sparkplug(message.topic, message.payload)
            if not n:
                return
        else:
            body = json.loads(message.payload)
            if body.get("kind") != "telemetry":
                return
            n, newest, seconds = count_values(body["data"])
        with self._lock:
            self.values += n
            self.messages += 1
            self.newest = max(self.newest, newest)
            for second, count in seconds.items():
                self.by_second[second] = self.by_second.get(second, 0) + count

    def snapshot(self) -> tuple[int, float]:
        with self._lock:
            return self.values, self.newest

    def sampled_between(self, start: int, end: int) -> int:
        """Values sampled in ``[start + 0.5, end + 0.5)``."""
        with self._lock:
            return sum(self.by_second.get(s, 0) for s in range(start, end))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _config(
    devices: int,
    registers: int,
    ports: list[int],
    mqtt_port: int,
    state: Path,
    publish: str,
    interval_s: float,
    payload: str = "json",
    storage: dict[str, int | str] | None = None,
) -> str:
    lines = [
        "[agent]",
        'id = "bench-gw"',
        'site = "bench"',
        f'state_dir = "{state}"',
        'log_level = "warning"',
        "",
        "[mqtt]",
        f'host = "{HOST}"',
        f"port = {mqtt_port}",
        f'payload = "{payload}"',
        "",
    ]
    if payload == "sparkplug_b":
        lines += ["[mqtt.sparkplug]", 'group_id = "bench"', ""]
    if storage:
        lines += ["[storage]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in storage.items()]
        lines += [""]
    lines += [
        "[telemetry]",
        f"interval_s = {interval_s}",
        "",
    ]
    for d in range(devices):
        lines += [
            f"[devices.d{d}]",
            'protocol = "modbus_tcp"',
            f'endpoint = "{HOST}:{ports[d]}"',
            "unit_id = 1",
            "interval_ms = 1000",
            'addressing = "zero"',
            f'publish = "{publish}"',
            "",
        ]
        for r in range(registers):
            lines += [f"[devices.d{d}.tags.r{r}]", 'table = "holding"', f"address = {r}", ""]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayResult:
    """Figures of one D x R run."""

    devices: int
    registers: int
    publish: str
    interval_s: float
    seconds: float
    received_per_s: float
    cpu_us_per_value: float
    rss_mb: float
    peak_rss_mb: float
    requests_per_poll: float
    lag_s: float
    payload: str = "json"
    disk_bytes_per_value: float = 0.0
    disk_mb_per_s: float = 0.0

    @property
    def expected_per_s(self) -> int:
        """Values per second the configuration should produce."""
        return self.devices * self.registers


def run_gateway(
    devices: int,
    registers: int,
    seconds: float,
    *,
    publish: str = "every",
    interval_s: float = 1.0,
    payload: str = "json",
    storage: dict[str, int | str] | None = None,
) -> GatewayResult:
    """Run one load-generator + agent + broker + subscriber measurement.

    With ``publish = "none"`` nothing is forwarded: the CPU figure is then per
    *polled* value, the baseline cost of polling and buffering. ``interval_s``
    is the telemetry publish interval (values per message = R x interval_s).
    ``storage`` sets keys of the agent's ``[storage]`` section (default: none set).
    Disk bytes per value = growth of the agent's ``/proc/<pid>/io`` ``write_bytes``
    over the window / values polled in it (:func:`write_bytes`).
    """
    import psutil  # type: ignore[import-untyped,unused-ignore]

    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory(prefix="bench-gw-") as tmp:
        work = Path(tmp)
        procs: list[subprocess.Popen[Any]] = []
        counter: _Counter | None = None
        try:
            stats = work / "server.json"
            server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_gateway",
                    "serve",
                    str(devices),
                    str(registers),
                    str(stats),
                ],
                stdout=subprocess.PIPE,
                cwd=Path(__file__).resolve().parents[1],
            )
            procs.append(server)
            if server.stdout is None:
                raise RuntimeError("load generator has no stdout pipe")
            ports = json.loads(server.stdout.readline())
            mqtt_port = _free_port()
            conf = work / "mosquitto.conf"
            conf.write_text(
                f"listener {mqtt_port} {HOST}\nallow_anonymous true\npersistence false\n"
                "max_queued_messages 100000\n"
            )
            broker = subprocess.Popen(  # noqa: S603
                [mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            procs.append(broker)
            _wait_port(mqtt_port, START_TIMEOUT_S)
            counter = _Counter(mqtt_port)
            cfg = work / "agent.toml"
            cfg.write_text(
                _config(
                    devices,
                    registers,
                    ports,
                    mqtt_port,
                    work / "state",
                    publish,
                    interval_s,
                    payload,
                    storage,
                )
            )
            log = (work / "agent.log").open("wb")
            # Not under systemd: no watchdog or notify socket inherited from our caller.
            env = {
                k: v
                for k, v in os.environ.items()
                if k not in ("WATCHDOG_USEC", "WATCHDOG_PID", "NOTIFY_SOCKET")
            }
            agent = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "edge_agent", "run", "-c", str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[1],
                env=env,
            )
            procs.append(agent)
            ps = psutil.Process(agent.pid)
            deadline = time.monotonic() + START_TIMEOUT_S
            while (counter.snapshot()[0] if publish != "none" else _requests(stats)) == 0:
                if agent.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"agent produced nothing: {(work / 'agent.log').read_text()[-2000:]}"
                    )
                time.sleep(0.1)
            time.sleep(seconds / 2)  # warm-up
            cpu0 = sum(ps.cpu_times()[:2])
            written0 = write_bytes(agent.pid)
            (req0, s0), t0 = _server_stats(stats), time.monotonic()
            wall0 = time.time()
            rss_max = 0
            end = t0 + seconds
            while time.monotonic() < end:
                rss_max = max(rss_max, ps.memory_info().rss)
                time.sleep(0.5)
            cpu1 = sum(ps.cpu_times()[:2])
            written = write_bytes(agent.pid) - written0
            _, newest = counter.snapshot()
            (req1, s1), t1 = _server_stats(stats), time.monotonic()
            wall1 = time.time()
            lag = wall1 - newest
            peak = _vm_hwm_bytes(agent.pid)
            elapsed = t1 - t0
            # The received rate counts values by their *sample* time inside whole seconds of
            # the window (after waiting for their messages), so a long publish interval
            # does not quantise it.
            first, last = math.ceil(wall0 - 0.5), math.floor(wall1 - 0.5)
            if publish != "none":
                time.sleep(interval_s + 2.0)
            rate = counter.sampled_between(first, last) / max(last - first, 1)
            # R <= 125: one request per device and poll; the server's own clock times its count.
            polled = (req1 - req0) / max(s1 - s0, 1e-9) * elapsed * registers
            return GatewayResult(
                devices=devices,
                registers=registers,
                publish=publish,
                interval_s=interval_s,
                seconds=elapsed,
                received_per_s=rate,
                cpu_us_per_value=(cpu1 - cpu0)
                / max(polled if publish == "none" else rate * elapsed, 1)
                * 1e6,
                rss_mb=rss_max / 2**20,
                peak_rss_mb=peak / 2**20,
                requests_per_poll=(req1 - req0) / (devices * max(s1 - s0, 1e-9)),
                lag_s=lag,
                payload=payload,
                disk_bytes_per_value=written / max(polled, 1),
                disk_mb_per_s=written / max(elapsed, 1e-9) / 1e6,
            )
        finally:
            if counter is not None:
                counter.close()
            for proc in reversed(procs):
                _stop(proc)


# --------------------------------------------------------------------------- engine only
def engine_figures(devices: int = 100, registers: int = 125, polls: int = 10) -> list[str]:
    """CPU per value of the pure telemetry engine (ingest; build with JSON) for each mode.

    ``every`` is measured twice: with polls as lists of readings, and as the column
    polls (:class:`~edge_agent.columns.ColumnPoll`) the Modbus driver hands over.
    """
    from edge_agent.columns import Column, ColumnPoll
    from edge_agent.model import Reading
    from edge_agent.telemetry import PublishMode, PublishPolicy, TelemetryEngine

    tags = tuple(f"r{r}" for r in range(registers))
    lines = []
    modes = [(m, False) for m in PublishMode if m is not PublishMode.NONE]
    for mode, columns in [*modes, (PublishMode.EVERY, True)]:
        policy = PublishPolicy(
            mode=mode,
            aggregate_s=5.0 if mode is PublishMode.AGGREGATE else 0.0,
            deadband=0.5 if mode is PublishMode.CHANGE else 0.0,
        )
        engine = TelemetryEngine(
            {(f"d{d}", f"r{r}"): policy for d in range(devices) for r in range(registers)}, 1.0
        )
        t_ingest = t_build = 0.0
        size = 0
        for p in range(polls):
            batches: list[Any] = [
                [
                    Reading(
                        device=f"d{d}",
                        tag=f"r{r}",
                        value=(p * 7 + r) & 0xFFFF,
                        ts=1000.0 + p + d / 1000,
                        mono=0.0,
                    )
                    for r in range(registers)
                ]
                for d in range(devices)
            ]
            if columns:
                batches = [
                    ColumnPoll(b[0].device, [Column(tags, [r.value for r in b], b[0].ts, 0.0)])
                    for b in batches
                ]
            gc.collect()
            a = time.process_time()
            for batch in batches:
                engine.ingest(batch)
            b = time.process_time()
            messages = engine.due(1000.0 + p + 0.9)
            t_ingest += b - a
            t_build += time.process_time() - b
            size += sum(len(m.text) for m in messages)
        n = devices * registers * polls
        name = f"{mode.value} (columns)" if columns else mode.value
        lines.append(
            f"  engine {name:17s}: ingest {t_ingest / n * 1e6:5.2f} us/value, "
            f"build + JSON {t_build / n * 1e6:5.2f} us/value, {size / n:5.1f} bytes/value"
        )
    return lines


def main() -> None:
    """Print the engine figures, then the gateway figures for each size."""
    seconds = float(os.environ.get("EDGE_BENCH_SECONDS", "12"))
    print("telemetry engine, in-process, 100 devices x 125 tags, 10 polls, process_time:")
    for line in engine_figures():
        print(line)
    print(
        "gateway end to end: separate load-generator process, `edge-agent run` (1 s poll, "
        "telemetry interval 'int. s'), private mosquitto, paho subscriber counting values; "
        f"warm-up {seconds / 2:.0f} s, window {seconds:.0f} s; CPU = agent user+system "
        '(psutil) / values received (publish = "none": / values polled); peak RSS = VmHWM; '
        "lag = now - newest received sample time; disk B/value = agent's /proc/<pid>/io "
        "write_bytes over the window / values polled"
    )
    print(_HEADER)
    big_d, big_r = SIZES[-1]
    runs = [(d, r, "every", 1.0, "json") for d, r in SIZES]
    runs += [(big_d, big_r, "every", 5.0, "json"), (big_d, big_r, "change", 1.0, "json")]
    runs += [(big_d, big_r, "none", 1.0, "json")]
    runs += [(big_d, big_r, "every", 1.0, "sparkplug_b")]
    for devices, registers, publish, interval_s, payload in runs:
        try:
            r = run_gateway(
                devices,
                registers,
                seconds,
                publish=publish,
                interval_s=interval_s,
                payload=payload,
            )
        except Exception as exc:  # report the size and go on with the others
            print(f"  {devices:>4} x {registers:<3} {publish:>7} {payload} FAILED: {exc}")
            continue
        print(_row(r) + ("  (Sparkplug B)" if payload == "sparkplug_b" else ""), flush=True)


_HEADER = (
    f"  {'D x R':>9} {'publish':>7} {'int. s':>6} {'expected/s':>10} {'received/s':>10} "
    f"{'CPU us/value':>12} {'RSS MB':>7} {'peak MB':>7} {'req/poll':>8} {'lag s':>6} "
    f"{'disk B/value':>12} {'disk MB/s':>9}"
)


def _row(r: GatewayResult) -> str:
    expected = r.expected_per_s if r.publish != "none" else 0
    lag = f"{r.lag_s:>6.2f}" if r.received_per_s else f"{'-':>6}"
    return (
        f"  {r.devices:>4} x {r.registers:<3} {r.publish:>7} {r.interval_s:>6.0f} {expected:>10} "
        f"{r.received_per_s:>10.0f} {r.cpu_us_per_value:>12.2f} {r.rss_mb:>7.1f} "
        f"{r.peak_rss_mb:>7.1f} {r.requests_per_poll:>8.2f} {lag} "
        f"{r.disk_bytes_per_value:>12.1f} {r.disk_mb_per_s:>9.2f}"
    )


#: ``[storage]`` variants of :func:`disk` (issue 20): today's defaults, the other ``raw``
#: modes (the default is ``blocks``), then readings
#: committed once a second instead of every ``flush_rows`` = 1000 rows (80 ms at this load),
#: then the same with ``outbox_sync = "normal"`` (weaker: for comparison only).
DISK_VARIANTS: tuple[tuple[str, dict[str, int | str]], ...] = (
    ("defaults", {}),
    ("raw = changes", {"raw": "changes"}),
    ("raw = none", {"raw": "none"}),
    ("flush 1 s", {"flush_interval_ms": 1000, "flush_rows": 20000}),
    (
        "flush 1 s + outbox normal",
        {"flush_interval_ms": 1000, "flush_rows": 20000, "outbox_sync": "normal"},
    ),
)


def disk(devices: int = 100, registers: int = 125) -> None:
    """Disk bytes written per polled value: publish every / change / none, then storage variants."""
    seconds = float(os.environ.get("EDGE_BENCH_SECONDS", "12"))
    print(
        f"gateway disk writes: {devices} x {registers}, 1 s poll and telemetry interval, "
        f"window {seconds:.0f} s; disk B/value = agent's /proc/<pid>/io write_bytes over the "
        "window / values polled; load = os.getloadavg() before the run"
    )
    print(f"{'storage':>26} {'load 1/5/15':>15}" + _HEADER)
    runs = [(p, name, st) for p in ("every", "change", "none") for name, st in DISK_VARIANTS[:1]]
    runs += [("every", name, st) for name, st in DISK_VARIANTS[1:]]
    for publish, name, storage in runs:
        load = "/".join(f"{v:.2f}" for v in os.getloadavg())
        try:
            r = run_gateway(devices, registers, seconds, publish=publish, storage=storage)
        except Exception as exc:
            print(f"{name:>26} {load:>15} {publish} FAILED: {exc}", flush=True)
            continue
        print(f"{name:>26} {load:>15}" + _row(r), flush=True)


def ab(rounds: int = 3, devices: int = 100, registers: int = 125) -> None:
    """JSON and Sparkplug B runs alternated (JSON, Sparkplug, JSON, ...), load average each."""
    seconds = float(os.environ.get("EDGE_BENCH_SECONDS", "12"))
    print(
        f"gateway A/B: {devices} x {registers}, publish every, 1 s interval, "
        f"window {seconds:.0f} s; JSON and Sparkplug B alternated; "
        "load = os.getloadavg() (1, 5, 15 min) before the run"
    )
    print(
        f"  {'run':>3} {'payload':>11} {'load 1/5/15':>15} {'received/s':>10} "
        f"{'CPU us/value':>12} {'RSS MB':>7} {'peak MB':>7} {'lag s':>6}"
    )
    for i in range(rounds):
        for payload in ("json", "sparkplug_b"):
            load = "/".join(f"{v:.2f}" for v in os.getloadavg())
            try:
                r = run_gateway(devices, registers, seconds, payload=payload)
            except Exception as exc:
                print(f"  {i + 1:>3} {payload:>11} {load:>15} FAILED: {exc}", flush=True)
                continue
            print(
                f"  {i + 1:>3} {payload:>11} {load:>15} {r.received_per_s:>10.0f} "
                f"{r.cpu_us_per_value:>12.2f} {r.rss_mb:>7.1f} {r.peak_rss_mb:>7.1f} "
                f"{r.lag_s:>6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        _serve(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
    elif len(sys.argv) == 2 and sys.argv[1] == "ab":
        ab()
    elif len(sys.argv) == 2 and sys.argv[1] == "disk":
        disk()
    else:
        main()
