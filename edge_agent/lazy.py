"""Package attributes imported on first use (PEP 562 module ``__getattr__``).

A package re-exports its public names; the heavy ones (a module that loads sqlite3,
paho or asyncio) are listed with their module and imported only when first read, so
loading a configuration does not load the runtime (``tests/edge_agent/test_lean_imports.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_members(namespace: dict[str, Any], lazy: Mapping[str, str]) -> Callable[[str], Any]:
    """A package's ``__getattr__``: ``lazy`` maps a member's name to its module.

    ``namespace`` is the package's ``globals()``: a member read once is cached there,
    so ``__getattr__`` runs once per name. Any other name raises ``AttributeError``.
    """

    def member(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return member
