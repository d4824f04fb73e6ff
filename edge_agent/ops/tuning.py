"""Process-wide speed and memory settings, each with the measurement that justified it.

Kept in one place so that domain code stays plain: every setting here was
measured with the gateway benchmark (``python -m benchmarks gateway``, 100
devices x 125 registers polled every second, see ``docs/bench-telemetry.md``)
and is worth its figure. Nothing here changes what the agent computes or emits.
"""

from __future__ import annotations

import gc
import json
from typing import Any

#: ``gc.set_threshold`` after start-up: young generation 10,000 (default 700).
#: Readings live about one publish interval, long enough to survive the default
#: youngest generation and be promoted, so a gateway paid about 2 us per value in
#: collections (``gc.callbacks``: 400 young, 40 middle and 3 full collections per
#: 10 s at 12,500 values/s; 23 ms of collections per second against 1 ms with
#: these thresholds). Almost everything allocated on the hot path is freed by
#: reference counting; a larger young generation lets it die there.
GC_THRESHOLDS = (10_000, 10, 10)

#: Telemetry values per outbox commit while a round's messages are built: the whole
#: round's encoded values never exist at once (peak RSS), for a few more commits per
#: round. Each commit (FULL) rewrites the outbox's partly filled pages in the WAL: at
#: 100 x 125 values/s, 2,500 (five commits a second) wrote 31.5-32.2 bytes per polled
#: value, 12,500 (one) 22.4-22.8, for 0.4-0.7 MB more RSS (issue 20, bench_gateway).
TELEMETRY_VALUES_PER_COMMIT = 12_500


def settle_heap() -> None:
    """Call once the long-lived objects exist (config, read plans, imports).

    ``gc.freeze`` moves them out of the collector's generations, so the hot path does
    not keep re-scanning them (about 1 us per value at 12,500 values/s), then the
    thresholds of :data:`GC_THRESHOLDS` apply.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def compact_json(data: Any) -> str:
    """JSON text of a tree the agent built, for files it writes often (``status.json``).

    ``json.dumps``, not ``json.dump``: dump streams through the pure-Python encoder,
    about ten times slower than the C one for a gateway's 12,500 tag entries.
    ``check_circular=False``: the status is a tree we build (the check costs a dict
    insert and delete per container). ``ensure_ascii=False``: the file is UTF-8, and
    escaping every key and string to ASCII took about 40 % of the encoding time.
    """
    return json.dumps(
        data, default=str, separators=(",", ":"), check_circular=False, ensure_ascii=False
    )
