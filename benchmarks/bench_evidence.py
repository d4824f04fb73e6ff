"""Evidence benchmarks: signing and chaining cost per record, bytes per message, bundle size.

Prints figures with their method (``make bench BENCH=evidence``; docs/bench-evidence.md):

1. **CPU per chained record**: final KPI records (the largest chained kind, about 1.1 KB of
   ``data``) are stored through :meth:`Buffer.publish_many` into a real SQLite outbox, once
   with the evidence chain and once without; the difference in this process's CPU time
   (``time.process_time``, which includes the writer thread) per record is the cost of
   canonicalising, hashing, signing, linking and keeping the record in the ``evidence``
   table. ``outbox_sync = "normal"``, so fsync time (not CPU) does not blur it. Also the
   parts, timed alone with ``timeit``.
2. **Bytes per message**: the envelope with and without its ``proof``.
3. **verify**: records per second checked (signature, chain) from a capture.
4. **Bundle size, one machine, one month**: a month published through the chain
   (1-minute samples, every window kind, stops, revisions), exported with exact samples;
   then the same records exported with one sample per second (2.6 million samples,
   streamed into the bundle's LZMA member), which is what a real 1 Hz machine sends.

Bounded to about two minutes on a Raspberry-Pi-class core.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import tempfile
import time
import timeit
import zipfile
from collections.abc import Iterator
from pathlib import Path

from edge_agent.buffer import Buffer, Outgoing, StorageConfig, SyncMode
from edge_agent.evidence import proof
from edge_agent.evidence.canonical import canonical, digest
from edge_agent.evidence.chain import Chain
from edge_agent.evidence.keys import KeyStore, SigningKey, verify_signature
from edge_agent.evidence.samples import SampleSet
from edge_agent.kpi.record import KpiRecord
from edge_agent.kpi.sample import Sample

N_RECORDS = 2000
BATCH = 10


def _kpi(i: int) -> dict[str, object]:
    rec = KpiRecord(
        name=f"hour:2026-11-26T{i % 24:02d}/{i}",
        start=1795000000.0 + 3600 * i,
        end=1795003600.0 + 3600 * i,
        calendar_time_s=3600.0,
        planned_time_s=3600.0,
        running_time_s=3100.5 + i % 7,
        micro_stop_time_s=60.25,
        downtime_breakdown_s=400.0,
        downtime_by_code={"101": 300.0, "205": 100.0},
        ttr_sum_s=400.0,
        stops=2,
        micro_stops=3,
        failures=1,
        total_count=1240 + i % 13,
        good_count=1220,
        ideal_cycle_time_s=2.5,
        final=True,
        spec_version="kpi-spec/1",
        profile_hash="b6e3926c8a0ca46c3782c6f44124ab7895f71254f0bbe734126c9c6aedefbc9d",
    ).as_dict()
    rec["machine"] = "press1"
    return rec


async def _publish(state: Path, chained: bool) -> tuple[float, list[bytes]]:
    from edge_agent.uplink.payload import envelope

    chain = Chain(KeyStore(state), "gw-bench", topics={"gap": "g", "key": "k"}) if chained else None
    config = StorageConfig(path=state / "buffer.db", outbox_sync=SyncMode.NORMAL)
    buf = Buffer(config, "gw-bench", chain=chain)
    await buf.open()
    records = [_kpi(i) for i in range(N_RECORDS)]
    t0 = time.process_time()
    for i in range(0, N_RECORDS, BATCH):
        await buf.publish_many(
            [Outgoing(kind="kpi", topic="t", data=d, priority=0) for d in records[i : i + BATCH]]
        )
    cpu = time.process_time() - t0
    rows = await buf.fetch_outbox(after=0, limit=N_RECORDS + 10)
    out = [envelope(r, "gw-bench", buf.epoch) for r in rows if r.kind == "kpi"]
    await buf.close()
    return cpu, out


def _parts() -> dict[str, float]:
    data = _kpi(1)
    text = json.dumps(data, separators=(",", ":"))
    key = SigningKey.generate()
    head = proof.header(
        agent="gw",
        epoch="12345678",
        seq=1,
        kind="kpi",
        ts="2026-11-26T14:00:05.120Z",
        data_sha256=digest(data),
        kid=key.kid,
        prev="ab" * 32,
    )
    raw = canonical(head)
    sig = key.sign(raw)
    n = 2000
    return {
        "parse the data JSON": timeit.timeit(lambda: json.loads(text), number=n) / n,
        "RFC 8785 canonical form of data": timeit.timeit(lambda: canonical(data), number=n) / n,
        "SHA-256 of data": timeit.timeit(lambda: digest(data), number=n) / n
        - timeit.timeit(lambda: canonical(data), number=n) / n,
        "header canonical form": timeit.timeit(lambda: canonical(head), number=n) / n,
        "Ed25519 sign": timeit.timeit(lambda: key.sign(raw), number=n) / n,
        "Ed25519 verify (verify side)": timeit.timeit(
            lambda: verify_signature(key.public.raw, sig, raw), number=n
        )
        / n,
    }


def _month_bundle(tmp: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edge_agent.evidence.bundle import read_capture
    from edge_agent.evidence.export import export_bundle
    from edge_agent.evidence.samples import ListSamples
    from edge_agent.evidence.verify import Trust, verify
    from tests.edge_agent.evidence.month import AGENT, MACHINE, T0, build_month

    t0 = time.perf_counter()
    month = build_month(tmp, days=30)
    built = time.perf_counter() - t0
    keys = KeyStore(tmp)
    out = tmp / "month.zip"
    result = export_bundle(
        db=month.db,
        out=out,
        start=T0,
        end=month.end + 1,
        agent=AGENT,
        keys=keys,
        samples=ListSamples({MACHINE: month.samples}),
        current_profiles={MACHINE: month.profile},
    )
    with zipfile.ZipFile(out) as z:
        sizes = {i.filename: (i.file_size, i.compress_size) for i in z.infolist()}
    chained = sum(1 for e in month.envelopes if '"prev"' in e)
    print(
        f"month simulated and published in {built:.1f} s: {len(month.envelopes)} messages, "
        f"{chained} chained, {month.signed - chained} signed only (so-far)"
    )
    print(f"bundle (1-minute samples): {result.bytes / 1e6:.2f} MB, {result.records} records")
    for name, (raw, packed) in sorted(sizes.items()):
        if raw > 10_000:
            print(f"  {name:<40} {raw / 1e6:7.2f} MB raw  {packed / 1e6:6.2f} MB in the ZIP")
    key = keys.active()
    if key is None:
        raise RuntimeError("no device key after the month")
    capture = tmp / "capture.jsonl"
    capture.write_text("\n".join(month.envelopes) + "\n")
    t0 = time.perf_counter()
    report = verify(read_capture(capture), Trust(keys=[key.public.raw]))
    took = time.perf_counter() - t0
    if not report.ok:
        raise RuntimeError(f"the month does not verify: {report.problems[:3]}")
    print(
        f"verify (capture, signatures and chain): {len(month.envelopes)} records in {took:.2f} s "
        f"= {len(month.envelopes) / took:,.0f} records/s"
    )
    from edge_agent.evidence.bundle import read_bundle

    t0 = time.perf_counter()
    report = verify(read_bundle(out), Trust(keys=[key.public.raw]))
    took = time.perf_counter() - t0
    if not report.ok:
        raise RuntimeError(f"the bundle does not verify: {report.problems[:3]}")
    print(
        f"verify (bundle, with recomputation of {len(report.windows)} windows from "
        f"{len(month.samples)} samples): {took:.2f} s"
    )
    # One sample per second for the month, exported the real way (streamed into the LZMA
    # member, never all in memory); the records are the month's above.
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    one_hz = export_bundle(
        db=month.db,
        out=tmp / "month-1hz.zip",
        start=T0,
        end=month.end + 1,
        agent=AGENT,
        keys=keys,
        samples=_OneHertz(days=30),
    )
    took, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    with zipfile.ZipFile(one_hz.path) as z:
        info = z.getinfo(f"samples/{MACHINE}.jsonl")
    count = 86400 * 30
    print(
        f"samples at 1 Hz: {count:,} samples, {info.file_size / 1e6:.0f} MB raw, "
        f"{info.compress_size / 1e6:.1f} MB in the ZIP (LZMA, "
        f"{info.compress_size / count:.1f} bytes per sample)"
    )
    print(
        f"bundle for a month of one machine sampled at 1 Hz: {one_hz.bytes / 1e6:.1f} MB "
        f"(export {took:.0f} s wall, {cpu:.0f} s CPU, incl. generating the samples)"
    )


class _OneHertz:
    """A sample source yielding a month at 1 Hz, one simulated day at a time."""

    def __init__(self, days: int) -> None:
        self.days = days

    def samples(self, machine: str, start: float, end: float) -> SampleSet:
        """The whole month (every machine name gets the same samples)."""
        return SampleSet(self._iter(), start, end, exact=True, source="bench")

    def _iter(self) -> Iterator[Sample]:
        from tests.edge_agent.evidence.month import make_samples

        for day in range(self.days):
            for s in make_samples(1, 1.0, seed=day):
                yield dataclasses.replace(s, t=s.t + day * 86400.0)


def main() -> None:
    """Run the evidence benchmarks and print their figures."""
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "plain").mkdir()
        (base / "chained").mkdir()
        plain_cpu, plain = asyncio.run(_publish(base / "plain", chained=False))
        chained_cpu, signed = asyncio.run(_publish(base / "chained", chained=True))
        per = (chained_cpu - plain_cpu) / N_RECORDS
        print(
            f"CPU per final KPI record stored: {plain_cpu / N_RECORDS * 1e6:.0f} us without "
            f"evidence, {chained_cpu / N_RECORDS * 1e6:.0f} us with: +{per * 1e6:.0f} us "
            f"for signing and chaining ({N_RECORDS} records, {BATCH} per commit)"
        )
        added = [len(b) - len(a) for a, b in zip(plain, signed, strict=True)]
        print(
            f"bytes added per chained message: {sum(added) / len(added):.0f} "
            f"(envelope {sum(map(len, plain)) / len(plain):.0f} -> "
            f"{sum(map(len, signed)) / len(signed):.0f} bytes)"
        )
        for part, seconds in _parts().items():
            print(f"  {part:<36} {seconds * 1e6:7.1f} us")
        (base / "month").mkdir()
        _month_bundle(base / "month")
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
