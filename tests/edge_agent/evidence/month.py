"""A simulated month of one machine, published through a real Buffer with the evidence chain.

The machine runs with stops of several classes and fault codes and an occasional
read failure; the streaming calculator produces stop events, "so far" and final
KPI records for hour, shift, day and month windows exactly as the runtime drives
it; every message goes through :meth:`Buffer.publish_many` (real SQLite, the
writer thread, the chain signing inside the outbox transaction). The outbox rows
become the envelopes a subscriber would have saved. Used by the evidence tests and
``benchmarks/bench_evidence.py``.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.buffer import Buffer, Outgoing, StorageConfig, SyncMode
from edge_agent.configkit import Issues, Table
from edge_agent.evidence.audit import config_record
from edge_agent.evidence.chain import Chain
from edge_agent.evidence.keys import KeyStore
from edge_agent.kpi import KpiProfile, MachineCalculator, Sample, parse_profile
from edge_agent.kpi.calendar import WindowKind, windows_containing
from edge_agent.reporting.journal import journal_row
from edge_agent.uplink.payload import envelope

AGENT = "gw-evidence"
MACHINE = "press1"
T0 = 1793487600.0  # 2026-11-01T00:00:00+01:00 (Europe/Berlin), the month's first instant
DAY = 86400.0
KINDS = ("hour", "shift", "day", "month")
TOPICS = {"gap": f"edge/site/{AGENT}/gap", "key": f"edge/site/{AGENT}/key"}
LATENESS_S = 300.0


def profile() -> KpiProfile:
    """Three 8-hour shifts in Europe/Berlin, customer-attributed fault codes 900-999."""
    issues = Issues("month")
    prof = parse_profile(
        Table(
            {
                "ideal_cycle_time_s": 50.0,
                "micro_stop_threshold_s": 120.0,
                "timezone": "Europe/Berlin",
                "shifts": [
                    {"name": "A", "start": "06:00", "end": "14:00"},
                    {"name": "B", "start": "14:00", "end": "22:00"},
                    {"name": "C", "start": "22:00", "end": "06:00"},
                ],
                "sla": {"customer_fault_codes": [[900, 999]]},
            },
            "",
            issues,
        )
    )
    issues.raise_if_any()
    return prof


def make_samples(days: float, step_s: float, seed: int = 7) -> list[Sample]:
    """A machine's samples: runs, micro-stops, breakdowns, a read failure now and then."""
    rng = random.Random(seed)
    out: list[Sample] = []
    t = T0
    end = T0 + days * DAY
    run, fault, until = 1, 0, T0 + 3600.0
    good = total = 0
    mono = 1000.0
    while t < end:
        if t >= until:
            if run:
                run = 0
                fault = rng.choice([0, 101, 101, 205, 950])
                until = t + rng.choice([60.0, 90.0, 600.0, 1800.0, 2400.0])
            else:
                run, fault = 1, 0
                until = t + rng.uniform(1800.0, 4 * 3600.0)
        if run:
            made = max(1, round(step_s / 50.0))
            total += made
            good += made if rng.random() > 0.02 else made - 1
        bad = rng.random() < 0.001
        if bad:
            out.append(Sample(t=t, quality="bad", mono_s=mono, synced=True))
        else:
            out.append(
                Sample(t=t, run=run, fault=fault, good=good, total=total, mono_s=mono, synced=True)
            )
        t += step_s
        mono += step_s
    return out


@dataclass
class Month:
    """What was published, and where."""

    state_dir: Path
    db: Path
    samples: list[Sample]
    profile: KpiProfile
    envelopes: list[str] = field(default_factory=list)
    end: float = 0.0
    records: int = 0
    signed: int = 0


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


async def _run(
    state_dir: Path, days: float, step_s: float, so_far_every_s: float, report_every_s: float
) -> Month:
    prof = profile()
    samples = make_samples(days, step_s)
    clock = _Clock()
    keys = KeyStore(state_dir)
    chain = Chain(keys, AGENT, topics=TOPICS, clock=clock)
    storage = StorageConfig(path=state_dir / "buffer.db", outbox_sync=SyncMode.NORMAL)
    buf = Buffer(storage, AGENT, clock=clock, chain=chain)
    await buf.open()
    month = Month(state_dir=state_dir, db=storage.path, samples=samples, profile=prof)
    config_file = state_dir / "agent.toml"
    config_file.write_text("# the simulated agent's configuration\n")
    audit = config_record(event="start", config_file=config_file, profiles={MACHINE: prof})
    await buf.publish_many(
        [Outgoing(kind="config", topic=f"edge/site/{AGENT}/config", data=audit, priority=0)]
    )
    # Final windows are kept an hour for revisions (the runtime: a week), which keeps the
    # calculator's checkpoints small at this coarse sampling.
    calc = MachineCalculator(prof, allowed_lateness_s=LATENESS_S, keep_final_s=3600.0)
    ends: dict[str, float] = {}
    pending: list[Outgoing] = []
    next_report = T0 + report_every_s
    next_so_far = T0 + so_far_every_s
    kpi_topic = f"edge/site/{AGENT}/{MACHINE}/kpi"

    def kpi(rec: Any) -> None:
        data = rec.as_dict()
        data["machine"] = MACHINE
        key = f"{MACHINE}|{data['window']}|{data['revision']}|{data['final']}"
        topic = f"{kpi_topic}/{data['window'].split(':', 1)[0]}"
        pending.append(Outgoing(kind="kpi", topic=topic, data=data, priority=0, record_key=key))

    async def report(now: float, so_far: bool) -> None:
        clock.now = now
        for rec in [*calc.close_due(now), *calc.revisions()]:
            kpi(rec)
        if so_far:
            for name in calc.window_names(final=False):
                kpi(calc.record(name, now=now))
        intervals = [iv.as_dict() for iv in calc.drain_intervals()]
        if intervals:
            buf.add_intervals(MACHINE, intervals)
        if pending:
            await buf.publish_many(list(pending))
            pending.clear()

    for n, sample in enumerate(samples, start=1):
        t = sample.t
        while t >= next_report:
            await report(next_report, so_far=next_report >= next_so_far)
            if next_report >= next_so_far:
                next_so_far += so_far_every_s
            next_report += report_every_s
        for kind in KINDS:
            if t >= ends.get(kind, float("-inf")):
                found = windows_containing(prof, WindowKind(kind), t)
                for w in found:
                    calc.open_window(w.name, w.start, w.end)
                ends[kind] = min((w.end for w in found), default=t + 60.0)
        events = calc.add(sample)
        buf.add_samples([journal_row(MACHINE, n, sample)])  # the sample journal, as the agent
        for ev in events:
            data = ev.as_dict()
            data["machine"] = MACHINE
            pending.append(
                Outgoing(
                    kind="stop", topic=f"edge/site/{AGENT}/{MACHINE}/stop", data=data, priority=0
                )
            )
    end = T0 + days * DAY + LATENESS_S + 60.0
    await report(end, so_far=False)
    await buf.flush()
    month.end = end
    rows = await buf.fetch_outbox(after=0, limit=10_000_000)
    month.envelopes = [envelope(r, AGENT, buf.epoch).decode() for r in rows]
    month.records = len(rows)
    month.signed = sum(1 for r in rows if r.proof is not None)
    await buf.close()
    return month


def build_month(
    state_dir: Path,
    *,
    days: float = 30,
    step_s: float = 60.0,
    so_far_every_s: float = 3600.0,
    report_every_s: float = 900.0,
) -> Month:
    """Simulate and publish ``days`` of one machine into ``state_dir`` (see module doc)."""
    return asyncio.run(_run(state_dir, days, step_s, so_far_every_s, report_every_s))


def write_capture(path: Path, lines: list[str]) -> Path:
    """Save envelopes the way ``mosquitto_sub -F %j`` does (payload inside a record)."""
    with open(path, "w", encoding="utf-8") as fh:
        for i, line in enumerate(lines):
            doc = {"tst": i, "topic": "t", "qos": 1, "retain": False, "payload": json.loads(line)}
            fh.write(json.dumps(doc, separators=(",", ":")) + "\n")
    return path
