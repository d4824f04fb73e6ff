"""Error-collecting, typed access to parsed TOML tables (for scenario files).

Each getter checks type and range, records ``file: dotted.key: expectation``
in a shared issue list and returns a default so parsing goes on and every
mistake is reported at once; :meth:`TableReader.finish` flags unknown keys.
The simulators keep their own small reader on purpose: they must not import
``edge_agent`` (its config kit), because they are the independent reference.
This module does no I/O.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

E = TypeVar("E", bound=enum.Enum)


def kind(value: object) -> str:
    """Short name of a TOML value's type for error messages (never the value itself)."""
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}.get(
        type(value), "an array" if isinstance(value, list) else "a table"
    )


class TableReader:
    """Error-collecting typed access to one TOML table.

    Args:
        data: The table.
        path: Its dotted key path ("" for the root).
        issues: Shared list receiving ``file: key: problem`` lines.
        file: File name used in messages.
    """

    def __init__(self, data: Mapping[str, Any], path: str, issues: list[str], file: str) -> None:
        self.data = data
        self.path = path
        self.issues = issues
        self.file = file
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        """Dotted path of a key in this table."""
        return f"{self.path}.{name}" if self.path else name

    def err(self, name: str, message: str) -> None:
        """Record a problem with one key."""
        self.issues.append(f"{self.file}: {self.key(name)}: {message}")

    def get(self, name: str) -> Any:
        """Raw value of a key (None when absent); marks the key as known."""
        self.used.add(name)
        return self.data.get(name)

    def number(
        self, name: str, default: float, *, lo: float = -math.inf, hi: float = math.inf
    ) -> float:
        """A finite number in ``[lo, hi]`` (ints accepted), else ``default`` plus an issue."""
        v = self.get(name)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            self.err(name, f"expected a number, got {kind(v)}")
            return default
        if not lo <= v <= hi:
            self.err(name, f"expected a number in [{lo}, {hi}], got {v}")
            return default
        return float(v)

    def integer(self, name: str, default: int, *, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``, else ``default`` plus an issue."""
        v = self.get(name)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            self.err(name, f"expected an integer, got {kind(v)}")
            return default
        if not lo <= v <= hi:
            self.err(name, f"expected an integer in [{lo}, {hi}], got {v}")
            return default
        return v

    def string(self, name: str, default: str) -> str:
        """A string, else ``default`` plus an issue."""
        v = self.get(name)
        if v is None:
            return default
        if not isinstance(v, str):
            self.err(name, f"expected a string, got {kind(v)}")
            return default
        return v

    def boolean(self, name: str, default: bool) -> bool:
        """A boolean, else ``default`` plus an issue."""
        v = self.get(name)
        if v is None:
            return default
        if not isinstance(v, bool):
            self.err(name, f"expected a boolean, got {kind(v)}")
            return default
        return v

    def choice(self, name: str, enum_type: type[E], default: E) -> E:
        """One of an enum's values, else ``default`` plus an issue listing the choices."""
        v = self.get(name)
        if v is None:
            return default
        allowed = [str(e.value) for e in enum_type]
        if v not in allowed:
            self.err(name, f"expected one of {', '.join(allowed)}, got {v!r}")
            return default
        return enum_type(v)

    def int_list(self, name: str, *, lo: int, hi: int) -> tuple[int, ...] | None:
        """An array of integers in ``[lo, hi]``, else None plus an issue."""
        v = self.get(name)
        if v is None:
            return None
        ok = isinstance(v, list) and all(
            isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi for x in v
        )
        if not ok:
            self.err(name, f"expected an array of integers in [{lo}, {hi}]")
            return None
        return tuple(v)

    def table(self, name: str) -> TableReader | None:
        """A sub-table reader, or None when absent or not a table."""
        v = self.get(name)
        if v is None:
            return None
        if not isinstance(v, dict):
            self.err(name, f"expected a table, got {kind(v)}")
            return None
        return TableReader(v, self.key(name), self.issues, self.file)

    def tables(self, name: str) -> Iterator[TableReader]:
        """Readers for an array of tables (``[[...]]``)."""
        v = self.get(name)
        if v is None:
            return
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            self.err(name, "expected an array of tables ([[...]])")
            return
        for i, item in enumerate(v):
            yield TableReader(item, f"{self.key(name)}[{i}]", self.issues, self.file)

    def finish(self) -> None:
        """Record every key nobody asked for as unknown."""
        for k in self.data:
            if k not in self.used:
                self.issues.append(f"{self.file}: {self.key(k)}: unknown key")
