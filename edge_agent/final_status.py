"""The agent's last status snapshot on a clean stop, marked ``stopped_at``.

``edge-agent status`` tells "stopped cleanly" from "crashed" and "hung" by
this mark: a snapshot that carries ``stopped_at`` was written by an agent on
its way out (SIGTERM, ``systemctl stop``); a stale one without it was left by
an agent that died or froze. The running agent rewrites ``status.json``
without the mark, so a restart clears it.

What it does not do: decide anything about the shutdown (the runtime calls it
once, after the last records were queued and before the buffer closes). It
never raises: a snapshot that cannot be written is logged once, and the stop
goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.ops.statuswrite import reason_of, write_atomic

__all__ = ["write_final_status"]

log = logging.getLogger("edge_agent.runtime")


def _write(path: Path, parts: list[str], stopped_at: float) -> None:
    doc = json.loads("".join(parts))
    doc["stopped_at"] = stopped_at
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str)
    write_atomic(path, [text])


async def write_final_status(
    path: Path, parts: Callable[[], list[str]], *, stopped_at: float | None = None
) -> None:
    """Write the final snapshot (the runtime's ``status_parts``) with ``stopped_at`` added.

    Args:
        path: ``<state_dir>/status.json``.
        parts: Builds the snapshot text in pieces (called on the event loop).
        stopped_at: Epoch time of the stop (default now).
    """
    when = time.time() if stopped_at is None else stopped_at
    try:
        await asyncio.to_thread(_write, path, parts(), when)
    except OSError as exc:  # a full disk: the old file stays; no traceback needed
        log.error("Could not write the final status file path=%s reason=%s", path, reason_of(exc))
    except Exception:
        log.exception("Could not write the final status file path=%s", path)
