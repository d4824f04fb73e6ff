"""Run every ``benchmarks/bench_*.py`` module's ``main()`` in turn, or the ones named.

Usage: ``python -m benchmarks [NAME ...]`` (NAME without the ``bench_`` prefix,
e.g. ``kpi modbus``). Each benchmark prints its figures and its method.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
from pathlib import Path


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"
    )


def main(argv: list[str]) -> int:
    """Run the selected benchmarks; return an exit code."""
    here = Path(__file__).parent
    available = sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    selected = argv or available
    unknown = [n for n in selected if n not in available]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}",
            file=sys.stderr,
        )
        return 2
    print(f"machine: {_machine()}")
    failed = []
    for name in selected:
        print(f"\n=== bench {name} ===", flush=True)
        t0 = time.perf_counter()
        try:
            importlib.import_module(f"benchmarks.bench_{name}").main()
        except Exception as exc:
            print(f"bench {name} FAILED: {exc!r}")
            failed.append(name)
        print(f"=== bench {name} took {time.perf_counter() - t0:.1f} s ===", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
