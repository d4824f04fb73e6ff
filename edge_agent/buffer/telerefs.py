"""Telemetry outbox rows that refer to frames instead of carrying their values (issue 20).

With ``raw = "blocks"`` every polled value is already stored once, as a frame
(:mod:`.blocks`). A telemetry message of ``every`` samples carries exactly the values
of its device's polls since its previous message, so storing its text in the outbox
too wrote every forwarded value twice (about 18 of the 22 bytes written per value at
100 devices x 125 registers). Such a row now stores a *reference* instead:

* the telemetry pump queues a :class:`~edge_agent.buffer.blocks.Cut` among the
  readings right after it built a round's first message (no await in between, so
  every poll the round's messages carry was queued before it, none after);
* a message becomes a :class:`FrameRef` (its device, the cut of the device's
  previous message, this cut, its value count and its :class:`Recipe`);
* the insert job commits the queued frames first, then :func:`resolve` turns the
  reference into the stored form (:data:`PREFIX` + compact JSON: device, frame id
  range, value count, ``t0``, units, clock flag) only when it is exact: both cuts
  resolved and the device's frames between them hold exactly the message's value
  count (anything else, such as a tag not published, a change or aggregate policy,
  a dropped reading, a dropped message, ``raw`` other than ``blocks``: the text is
  stored as before);
* the text is kept in a bounded :class:`TextCache` until the row is acknowledged;
  a row read without it (after a restart, or once the cache let it go) is rebuilt
  from its frames by :func:`materialise` (``rebuild_text``, byte-identical but for
  two polls of one device with the same reading time, see there).

Guarantees: a referring row commits in the same transaction as its frames (or after
them), so after a crash its frames exist; the outbox seq, ordering and eviction rules
are unchanged. Retention spares the frames unsent rows refer to
(:func:`referenced_floor`): the age limit does not remove them, and under the disk
budget they go only with the telemetry rows themselves (the order telemetry rows had
before). A row whose frames are gone all the same cannot be rebuilt: it is deleted at
fetch and counted like an evicted telemetry row (``outbox:telemetry``). Runs on the
writer thread only.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_agent.buffer import frames
from edge_agent.buffer.blocks import Cut
from edge_agent.buffer.outbox import REF_PREFIX, Priority
from edge_agent.buffer.schema import QUALITY_NAMES
from edge_agent.model import Quality, Reading

if TYPE_CHECKING:
    from edge_agent.telemetry.batcher import Recipe

PREFIX = REF_PREFIX
#: Characters of message text kept for rows not acknowledged yet (about 3,000 messages
#: of 125 values: ~30 s of backlog at 100 devices, before rows are rebuilt on fetch).
CACHE_CHARS = 4_000_000
#: References farther apart than this many frames are rebuilt from separate reads.
_SPAN = 20_000
_CHUNK = 500  # seqs per DELETE (below SQLite's historic 999 host-parameter limit)
#: Oldest referring rows read to find the lowest frame id still referred to.
FLOOR_ROWS = 1000
_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True, slots=True)
class FrameRef:
    """A staged telemetry message's values: its device's frames between two cuts."""

    device: str
    start: Cut
    end: Cut
    values: int
    recipe: Recipe


def resolve(ref: FrameRef) -> bytes | None:
    """The stored reference of a message, or None when it would not be exact."""
    start, end = ref.start.at, ref.end.at
    if start is None or end is None:
        return None
    device = ref.device
    if end[1].get(device, 0) - start[1].get(device, 0) != ref.values:
        return None
    body: dict[str, object] = {
        "d": device,
        "a": start[0],
        "b": end[0],
        "n": ref.values,
        "t0": ref.recipe.t0,
    }
    if ref.recipe.units:
        body["u"] = ref.recipe.units
    if ref.recipe.clock_unsynced:
        body["c"] = 1
    return PREFIX + _DUMPS(body).encode()


def is_ref(stored: object) -> bool:
    """Whether a stored ``data`` column is a reference."""
    return isinstance(stored, bytes) and stored[:2] == PREFIX


def referenced_floor(con: sqlite3.Connection) -> int | None:
    """The last frame id no unsent row refers to (None: no row refers to frames).

    Rows refer to frames in seq order except a message held in RAM and stored late,
    so the oldest :data:`FLOOR_ROWS` telemetry rows (an index seek) decide.
    """
    rows = con.execute(
        "SELECT data FROM outbox INDEXED BY outbox_priority_seq "
        "WHERE priority = ? AND kind = 'telemetry' ORDER BY seq LIMIT ?",
        (int(Priority.LOW), FLOOR_ROWS),
    )
    firsts = [int(json.loads(d[len(PREFIX) :])["a"]) for (d,) in rows if is_ref(d)]
    return min(firsts) if firsts else None


class TextCache:
    """Texts of referring rows by seq, oldest dropped first beyond ``max_chars``.

    Args:
        max_chars: Bound on the characters held.
        on_lost: Called with the number of rows deleted because they could not be
            rebuilt (the writer counts them and shrinks its backlog).
    """

    def __init__(
        self, max_chars: int = CACHE_CHARS, on_lost: Callable[[int], None] | None = None
    ) -> None:
        self.max_chars = max_chars
        self.on_lost = on_lost
        self._texts: OrderedDict[int, str] = OrderedDict()
        self._chars = 0
        self.stored = 0  # rows stored as references
        self.rebuilt = 0  # rows read back without their text held: rebuilt from frames
        self.lost = 0  # rows that could not be rebuilt (deleted, counted)

    def __len__(self) -> int:
        return len(self._texts)

    def put(self, seq: int, text: str) -> None:
        """Keep the text of a row just stored."""
        self.stored += 1
        self._texts[seq] = text
        self._chars += len(text)
        while self._chars > self.max_chars and self._texts:
            _, old = self._texts.popitem(last=False)
            self._chars -= len(old)

    def figures(self) -> dict[str, int]:
        """Counters for the buffer's stats (``telemetry_refs``)."""
        return {
            "stored": self.stored,
            "rebuilt": self.rebuilt,
            "lost": self.lost,
            "cached": len(self._texts),
        }

    def get(self, seq: int) -> str | None:
        """The text of a row, when still held."""
        return self._texts.get(seq)

    def drop(self, seqs: Iterable[int]) -> None:
        """Forget acknowledged (deleted) rows."""
        texts = self._texts
        for seq in seqs:
            text = texts.pop(seq, None)
            if text is not None:
                self._chars -= len(text)


def _readings(device: str, tags: Sequence[str], row: tuple[Any, ...]) -> list[Reading]:
    _, ts, _, mono, enc, data = row
    size = len(tags)
    d = frames.decode(int(enc), data, size)
    where = frames.positions(d, size)
    out = []
    for k, value in enumerate(d.values):
        quality = Quality(QUALITY_NAMES.get(d.quality[k], "bad")) if d.quality else Quality.GOOD
        out.append(
            Reading(
                device,
                tags[where[k]],
                value,  # type: ignore[arg-type]  # a stored value is a Reading value
                float(ts),
                float(mono),
                quality,
                d.reason[k] if d.reason else "",
                d.source_ts[k] if d.source_ts else None,
            )
        )
    return out


def _rebuild_group(
    con: sqlite3.Connection, refs: list[tuple[int, dict[str, Any]]]
) -> dict[int, str | None]:
    lo = min(int(r["a"]) for _, r in refs)
    hi = max(int(r["b"]) for _, r in refs)
    devices = sorted({str(r["d"]) for _, r in refs})
    marks = ",".join("?" * len(devices))
    layouts = {
        int(i): (str(d), json.loads(t))
        for i, d, t in con.execute(
            f"SELECT id, device, tags FROM layouts WHERE device IN ({marks})",  # noqa: S608
            devices,
        )
    }
    ids: dict[str, list[int]] = {d: [] for d in devices}
    rows: dict[str, list[tuple[Any, ...]]] = {d: [] for d in devices}
    for row in con.execute(
        "SELECT id, ts, layout, mono, enc, data FROM frames WHERE id > ? AND id <= ? ORDER BY id",
        (lo, hi),
    ):
        found = layouts.get(int(row[2]))
        if found is not None:
            ids[found[0]].append(int(row[0]))
            rows[found[0]].append(row)
    from edge_agent.telemetry.batcher import Recipe, rebuild_text

    out: dict[int, str | None] = {}
    for seq, r in refs:
        device = str(r["d"])
        first = bisect.bisect_right(ids[device], int(r["a"]))
        last = bisect.bisect_right(ids[device], int(r["b"]))
        readings: list[Reading] = []
        for row in rows[device][first:last]:
            readings += _readings(device, layouts[int(row[2])][1], row)
        if len(readings) != int(r["n"]):
            out[seq] = None  # frames removed meanwhile (raw budget or age limit)
            continue
        recipe = Recipe(int(r["t0"]), r.get("u"), bool(r.get("c")))
        out[seq] = rebuild_text(device, readings, recipe)
    return out


def materialise(
    con: sqlite3.Connection, stored: Sequence[tuple[int, bytes]], cache: TextCache | None
) -> dict[int, str | None]:
    """The texts of referring rows (from the cache, else rebuilt); None: not rebuildable.

    Rows that cannot be rebuilt are deleted here (their own commit) and counted by the
    cache's ``on_lost``.
    """
    out: dict[int, str | None] = {}
    missing: list[tuple[int, dict[str, Any]]] = []
    for seq, blob in stored:
        text = cache.get(seq) if cache is not None else None
        if text is not None:
            out[seq] = text
        else:
            missing.append((seq, json.loads(blob[len(PREFIX) :])))
    missing.sort(key=lambda item: int(item[1]["a"]))
    group: list[tuple[int, dict[str, Any]]] = []
    top = 0
    for item in missing:
        if group and int(item[1]["a"]) > top + _SPAN:
            out.update(_rebuild_group(con, group))
            group = []
        group.append(item)
        top = max(top, int(item[1]["b"])) if len(group) > 1 else int(item[1]["b"])
    if group:
        out.update(_rebuild_group(con, group))
    lost = [seq for seq, text in out.items() if text is None]
    if cache is not None:
        cache.rebuilt += len(missing) - len(lost)
    for i in range(0, len(lost), _CHUNK):
        chunk = lost[i : i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        con.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", chunk)  # noqa: S608
    if lost and cache is not None:
        cache.lost += len(lost)
        if cache.on_lost is not None:
            cache.on_lost(len(lost))
    return out
