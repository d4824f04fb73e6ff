"""Fleet benchmark: simulated gateways -> Mosquitto -> edge-agent-collect -> PostgreSQL.

Method (printed with the figures):

1. **Recording.** The bundled simulator (scenario ``e2e``, 10x speed) and a real agent
   process run for ``RECORD_S`` seconds against a private Mosquitto with telemetry on
   (``publish = "every"``), health every 5 s and so-far KPI records every second; a
   subscriber saves every numbered message. These real payloads are the templates.
2. **Replay stream.** ``AGENTS`` simulated gateways, each ``SECONDS`` seconds of a
   gateway's default cadence built from the templates: one telemetry message per second,
   every 60 s three KPI records (hour, day, shift) and one health message, every 300 s
   one stop event. Each message is re-addressed (``agent``) and renumbered (``seq``
   1..n per gateway); data is kept byte for byte.
3. **Backlog drain per run** (fresh database and broker each run): the collector
   instances connect once (persistent sessions, ``$share/fleet/edge/#`` with 2),
   stop, the stream is published with QoS 1 (4 publisher connections; the broker queues
   it for the sessions), then the instances start again and drain it. Rate = messages /
   (last - first transaction timestamp in the ledger): what the collectors and
   PostgreSQL sustain, without the publishers' cost. Collector CPU per message from
   psutil; the run ends when the ledger holds every message (checked: nothing missing,
   nothing twice).

The machine is shared with other jobs: the load average is printed with every run.
Loopback only; the database server is the machine's (127.0.0.1:5432), one fresh
database per run, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

AGENTS = int(os.environ.get("BENCH_FLEET_AGENTS", "100"))
SECONDS = int(os.environ.get("BENCH_FLEET_SECONDS", "400"))
RECORD_S = float(os.environ.get("BENCH_FLEET_RECORD_S", "12"))
REPEATS = int(os.environ.get("BENCH_FLEET_REPEATS", "2"))
PUBLISHERS = 4
BATCH = 500
SERVER = os.environ.get("EDGE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres")


def record(work: Path) -> list[dict[str, Any]]:
    """Real agent messages (numbered ones), captured from a short simulated run."""
    from simulators.host import SimulatorHost
    from tests.integration.sim_config import sim_machine_config
    from tests.plugins.broker import Mosquitto, MqttCollector, find_mosquitto, free_port

    broker = Mosquitto(binary=find_mosquitto(), workdir=work, port=free_port())
    broker.start()

    async def run() -> list[dict[str, Any]]:
        async with SimulatorHost(
            "e2e", speed=10.0, seed=1, modbus_tcp=("127.0.0.1", 0), tick_s=0.01
        ) as sim:
            text = sim_machine_config(
                agent_id="rec",
                machine="press",
                state=work / "state",
                mqtt_port=broker.port,
                modbus_port=sim.modbus_port,
                poll_ms=100,
                windows='["hour", "day", "shift"]',
                allowed_lateness_s=1.0,
                kpi="ideal_cycle_time_s = 0.1\nmicro_stop_threshold_s = 1.0\nmax_gap_s = 1.0\n",
            )
            text = text.replace("timeout_ms = 500\n", 'timeout_ms = 500\npublish = "every"\n')
            text = text.replace("[mqtt]", "[health]\ninterval_s = 5.0\n\n[mqtt]", 1)
            (work / "agent.toml").write_text(text)
            with MqttCollector("127.0.0.1", broker.port, "edge/#") as capture:
                proc = subprocess.Popen(  # noqa: ASYNC220, S603 - the agent under test
                    [sys.executable, "-m", "edge_agent", "run", "-c", str(work / "agent.toml")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    await asyncio.sleep(RECORD_S)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=20)
                await asyncio.sleep(0.5)
                return [
                    m.json()
                    for m in capture.snapshot()
                    if m.payload.startswith(b"{") and b'"seq"' in m.payload
                ]

    try:
        return asyncio.run(run())
    finally:
        broker.stop()


def build_stream(recorded: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """The fleet's messages, interleaved by second like a real fleet publishes."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in recorded:
        by_kind.setdefault(doc["kind"], []).append(doc)
    for kind in ("telemetry", "kpi", "health", "stop"):
        if kind not in by_kind:
            raise RuntimeError(f"the recording has no {kind} message: {sorted(by_kind)}")
    kpis = by_kind["kpi"][-3:]
    out: list[tuple[str, bytes]] = []
    seqs = [0] * AGENTS
    counters = dict.fromkeys(by_kind, 0)

    def emit(agent: int, kind: str, template: dict[str, Any] | None = None) -> None:
        if template is None:
            pool = by_kind[kind]
            template = pool[counters[kind] % len(pool)]
            counters[kind] += 1
        seqs[agent] += 1
        doc = {**template, "agent": f"sim-{agent:05d}", "seq": seqs[agent]}
        name = f"sim-{agent:05d}"
        out.append((f"edge/fleet/{name}/{kind}", json.dumps(doc, separators=(",", ":")).encode()))

    for second in range(SECONDS):
        for agent in range(AGENTS):
            emit(agent, "telemetry")
            if second % 60 == 59:
                for k in kpis:
                    emit(agent, "kpi", k)
                emit(agent, "health")
            if second % 300 == 150:
                emit(agent, "stop")
    return out


def _publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    acked = 0
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_publish(*_a: Any) -> None:
        nonlocal acked
        acked += 1

    client.on_publish = on_publish
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for t, p in messages:
        client.publish(t, p, qos=1)
    deadline = time.monotonic() + 300
    while acked < len(messages) and time.monotonic() < deadline:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    if acked < len(messages):
        raise RuntimeError(f"publisher: {acked}/{len(messages)} acknowledged")


def publish(port: int, stream: list[tuple[str, bytes]]) -> float:
    """Publish with PUBLISHERS processes (each gateway on one of them); returns seconds."""
    parts: list[list[tuple[str, bytes]]] = [[] for _ in range(PUBLISHERS)]
    for t, p in stream:
        parts[hash(t.split("/")[2]) % PUBLISHERS].append((t, p))
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_publish, args=(port, part)) for part in parts]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=600)
        if proc.exitcode != 0:
            raise RuntimeError(f"publisher exited with {proc.exitcode}")
    return time.perf_counter() - t0


def one_run(instances: int, stream: list[tuple[str, bytes]], work: Path) -> dict[str, Any]:
    """Drain the stream with ``instances`` collectors; returns the figures."""
    import psutil  # type: ignore[import-untyped,unused-ignore]
    import psycopg

    from edge_agent.collect import migrate
    from edge_agent.collect.config import DatabaseConfig
    from tests.integration.collect_support import CollectorProcess, collector_toml
    from tests.plugins.broker import Mosquitto, find_mosquitto, free_port

    name = f"bench_fleet_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = f"{SERVER} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{SERVER} dbname={name}"
    broker = Mosquitto(
        binary=find_mosquitto(), workdir=Path(tempfile.mkdtemp(dir=work)), port=free_port()
    )
    broker.start()
    collectors: list[CollectorProcess] = []
    try:
        migrate.apply(DatabaseConfig(dsn=dsn))
        group = "fleet" if instances > 1 else ""
        configs = []
        for i in range(instances):
            path = work / f"{name}-c{i}.toml"
            path.write_text(
                collector_toml(
                    dsn=dsn,
                    port=broker.port,
                    client_id=f"bench-{i}",
                    group=group,
                    max_messages=BATCH,
                    heartbeat_s=1.0,
                )
            )
            configs.append(path)
        # Sessions and subscriptions first, then offline while the backlog is published.
        for path in configs:
            CollectorProcess(path, path.stem).start().stop()
        publish_s = publish(broker.port, stream)
        load_before = os.getloadavg()
        broker_cpu0 = _pid_cpu(psutil, broker.pid)
        collectors = [CollectorProcess(path, path.stem) for path in configs]
        t0 = time.perf_counter()
        marks = [c.launch() for c in collectors]  # all at once: they drain side by side
        for c, mark in zip(collectors, marks, strict=True):
            c.wait_subscribed(mark)
        # CPU spent starting (imports, migrations check) is not per-message work.
        started_cpu = [_cpu(psutil, c) for c in collectors]
        total = len(stream)
        deadline = time.monotonic() + 600
        count = 0
        while time.monotonic() < deadline:
            with psycopg.connect(dsn) as conn:
                row = conn.execute("SELECT count(*) FROM ledger").fetchone()
                count = int(row[0]) if row else 0
            if count >= total:
                break
            time.sleep(0.25)
        wall = time.perf_counter() - t0
        cpu = [_cpu(psutil, c) - s0 for c, s0 in zip(collectors, started_cpu, strict=True)]
        broker_cpu = _pid_cpu(psutil, broker.pid) - broker_cpu0
        with psycopg.connect(dsn) as conn:
            pids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE application_name LIKE 'edge-agent-collect/bench-%'"
                ).fetchall()
            ]
        pg_cpu = sum(_pid_cpu(psutil, pid) for pid in pids)
        load_after = os.getloadavg()
        stored = {}
        for c in collectors:
            c.stop()
            # The instance's own count, from its last log line.
            line = [x for x in c.output.splitlines() if "Collector stopped" in x][-1]
            stored[c.name] = int(line.split(" stored=")[1].split()[0])
        with psycopg.connect(dsn) as conn:
            first, last, n, dups = conn.execute(
                "SELECT min(received_at), max(received_at), count(*), "
                "(SELECT coalesce(sum(duplicates), 0) FROM agents) FROM ledger"
            ).fetchone() or (None, None, 0, 0)
            missing = conn.execute(
                "SELECT coalesce(sum(missing), 0) FROM agent_overview"
            ).fetchone()
        if n != total:
            raise RuntimeError(f"{n}/{total} messages stored within the time limit")
        span = (last - first).total_seconds() if first and last else wall
        return {
            "instances": instances,
            "messages": total,
            "publish_s": publish_s,
            "drain_s": span,
            "rate": total / span,
            "per_instance": {k: v / span for k, v in sorted(stored.items())},
            "collector_cpu_us_per_msg": 1e6 * sum(cpu) / total,
            "postgres_cpu_us_per_msg": 1e6 * pg_cpu / total,
            "broker_cpu_us_per_msg": 1e6 * broker_cpu / total,
            "duplicates": int(dups),
            "missing": int(missing[0]) if missing else -1,
            "load": (load_before, load_after),
        }
    finally:
        for c in collectors:
            c.kill()
        broker.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _cpu(psutil: Any, collector: Any) -> float:
    times = psutil.Process(collector.proc.pid).cpu_times()
    return float(times.user + times.system)


def _pid_cpu(psutil: Any, pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _uptime() -> str:
    return subprocess.run(
        ["/usr/bin/uptime"], check=False, capture_output=True, text=True
    ).stdout.strip()


def main() -> None:
    """Record, build the fleet stream, drain it with 1 and 2 collector instances."""
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        work = Path(tmp)
        print(f"uptime before: {_uptime()}")
        recorded = record(work)
        kinds: dict[str, int] = {}
        for doc in recorded:
            kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
        print(f"recorded {len(recorded)} agent messages in {RECORD_S:.0f} s: {kinds}")
        stream = build_stream(recorded)
        mix: dict[str, int] = {}
        size = 0
        for t, p in stream:
            mix[t.rsplit("/", 1)[1]] = mix.get(t.rsplit("/", 1)[1], 0) + 1
            size += len(p)
        print(
            f"stream: {AGENTS} gateways x {SECONDS} s = {len(stream)} messages "
            f"({size / len(stream):.0f} B average), mix {mix}"
        )
        results: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for _ in range(REPEATS):
            for instances in (1, 2):
                r = one_run(instances, stream, work)
                results[instances].append(r)
                per = ", ".join(f"{k} {v:,.0f}/s" for k, v in r["per_instance"].items())
                print(
                    f"{instances} instance(s): {r['rate']:,.0f} msg/s stored "
                    f"({r['messages']} in {r['drain_s']:.1f} s; {per}); collector CPU "
                    f"{r['collector_cpu_us_per_msg']:.0f} us/msg, its PostgreSQL backends "
                    f"{r['postgres_cpu_us_per_msg']:.0f} us/msg, Mosquitto "
                    f"{r['broker_cpu_us_per_msg']:.0f} us/msg; publish {r['publish_s']:.1f} s; "
                    f"duplicates {r['duplicates']}, missing {r['missing']}; "
                    f"load {r['load'][0][0]:.2f} -> {r['load'][1][0]:.2f}",
                    flush=True,
                )
        one = statistics.median(r["rate"] for r in results[1])
        two = statistics.median(r["rate"] for r in results[2])
        print(
            f"median: 1 instance {one:,.0f} msg/s, 2 instances {two:,.0f} msg/s (x{two / one:.2f})"
        )
        print(f"uptime after: {_uptime()}")


if __name__ == "__main__":
    main()
