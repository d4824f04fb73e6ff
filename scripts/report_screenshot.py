"""Regenerate docs/img/report.png, the README's picture of a report (``make report-screenshot``).

Runs ``edge-agent demo`` (simulators, private broker, agent) for ``--duration`` seconds
with its state kept in a temporary directory, writes ``edge-agent report`` for the
demo's machine with breakdowns (``m3``) over the run, and has headless Chromium
(``/usr/bin/chromium``, ``make system-deps``) take a screenshot of the page's top.
Nothing is drawn by hand: the picture is whatever the current code renders.

Usage: python scripts/report_screenshot.py [--duration 45] [--out docs/img/report.png]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
WINDOW = (1000, 1500)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> int:
    """Run the demo, render the report, take the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=45.0, help="demo run, seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "report.png")
    parser.add_argument("--machine", default="m3", help="the machine shown (default m3)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} missing: run `make system-deps`", file=sys.stderr)
        return 1
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="edge-report-shot-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        start = float(int(time.time()))
        subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "edge_agent", "demo", "--plain", "--duration",
             str(args.duration), "--state-dir", str(state)],
            check=True, env=env, stdout=subprocess.DEVNULL, timeout=args.duration + 120,
        )  # fmt: skip
        page = Path(tmp) / "report.html"
        subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "edge_agent", "report", str(state / "agent.toml"),
             "--from", _iso(start), "--to", _iso(time.time() + 1), "--machine", args.machine,
             "-o", str(page)],
            check=True, env=env, timeout=120,
        )  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603 - the system's Chromium on a local file
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--disable-background-networking", f"--window-size={WINDOW[0]},{WINDOW[1]}",
             f"--screenshot={args.out.resolve()}", page.as_uri()],
            check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
