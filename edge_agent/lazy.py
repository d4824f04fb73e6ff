"""Package attributes imported on first use (PEP 562 module ``__getattr__``).

A package re-exports its public names; the heavy ones (a module that loads sqlite3,
paho or asyncio) are listed with their module and imported only when first read, so
loading a configuration does not load the runtime (``tests/edge_agent/test_lean_imports.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def lazy_attribute(namespace: dict[str, Any], lazy: Mapping[str, str], name: str) -> Any:
    """The attribute ``name`` of the package whose globals are ``namespace``.

    Imports its module from ``lazy`` (name -> module) and caches it in ``namespace``,
    so the package's ``__getattr__`` runs once per name.

    Raises:
        AttributeError: ``name`` is not one of the package's lazy attributes.
    """
    module = lazy.get(name)
    if module is None:
        raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    namespace[name] = value
    return value
