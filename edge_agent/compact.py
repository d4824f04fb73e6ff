"""A long-lived object graph copied into fresh, dense memory, equal scalars shared.

Used for the configuration of the running agent (:func:`edge_agent.config.load_config_compact`):
a gateway's 12,500 tags are parsed among a ~15 MB TOML parse tree, and the few
objects that outlive the tree keep most of its memory arenas from being returned
to the operating system. Copying the graph through :mod:`pickle` after the tree is
gone allocates it anew, packed together.

The copy also shares equal ``str``, ``int`` and ``float`` values: ``pickle`` writes
numbers by value, so every tag's ``scale = 1.0``, ``offset = 0.0`` and
``interval_ms = 1000`` came back as objects of their own, and the 100 devices' tag
names ``r0`` ... ``r124`` as 12,500 strings. Here each distinct value is pickled
once and referenced (a persistent id) wherever it occurs: about 1.5 MB less for the
benchmark's 12,500 tags (``docs/bench-telemetry.md``, "Resident memory"). Floats
are told apart by their exact bits (``-0.0`` is not ``0.0``); ``bool`` is left to
pickle (its values are singletons already).

Only the agent's own objects go through here, in memory: nothing is read from a
file or a peer.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

_SHARED_TYPES = (str, int, float)


class _SharingPickler(pickle.Pickler):
    """Pickles each distinct scalar once (in :attr:`shared`) and refers to it by index."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.shared: list[Any] = []
        self._index: dict[tuple[type, Any], int] = {}

    def persistent_id(self, obj: Any) -> int | None:
        kind = type(obj)
        if kind not in _SHARED_TYPES:
            return None
        key = (kind, obj.hex() if kind is float else obj)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.shared)
            self.shared.append(obj)
        return index


class _SharingUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, shared: list[Any]) -> None:
        super().__init__(io.BytesIO(data))
        self._shared = shared

    def persistent_load(self, pid: Any) -> Any:
        return self._shared[pid]


def dump(value: Any) -> tuple[bytes, bytes]:
    """Pickle ``value`` as ``(scalars, graph)`` for :func:`load`.

    Raises:
        pickle.PicklingError, TypeError, AttributeError: Something in ``value`` cannot
            be pickled.
    """
    out = io.BytesIO()
    pickler = _SharingPickler(out)
    pickler.dump(value)
    return pickle.dumps(pickler.shared, protocol=pickle.HIGHEST_PROTOCOL), out.getvalue()


def load(scalars: bytes, graph: bytes) -> Any:
    """The value :func:`dump` pickled, in memory allocated now."""
    shared = pickle.loads(scalars)  # noqa: S301 - bytes :func:`dump` made in this process
    return _SharingUnpickler(graph, shared).load()
