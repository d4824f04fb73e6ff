"""A typed, error-collecting reader over parsed TOML tables.

Every config section in the agent is read through :class:`Table`: each getter
checks type and range, records a :class:`~edge_agent.errors.ConfigIssue`
naming the file, the dotted key path and what was expected, and returns a
placeholder so parsing continues and *all* mistakes are reported at once.
:meth:`Table.finish` turns keys nobody asked for into errors (typos must not
pass silently). This module does no I/O except :func:`load_toml`.

Limits: :func:`load_toml` refuses, as a config issue and never as a traceback,
anything no real configuration needs and a hostile or damaged file could use to
exhaust the agent: a file that is not a regular file or is larger than
:data:`MAX_FILE_BYTES`, nesting deeper than :data:`MAX_DEPTH` (arrays and tables;
deeper than the TOML parser's own recursion is reported the same way), a key
longer than :data:`MAX_KEY_CHARS`, a string longer than :data:`MAX_STRING_CHARS`
and a NUL character in any key or string (it would truncate or break a path).

Size: just over 400 lines because the typed table reader and the hardened TOML loader
(limits above) share the issue list and key-path formatting they report with.
"""

from __future__ import annotations

import difflib
import enum
import math
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import tomli

from edge_agent.errors import ConfigError, ConfigIssue

E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")

# A gateway with 12,500 tags is about 1.5 MB of TOML.
MAX_FILE_BYTES = 16 * 1024 * 1024
# The deepest real configuration nests about 6 levels (machines.m.kpi.shifts[0].x).
MAX_DEPTH = 24
MAX_KEY_CHARS = 256
MAX_STRING_CHARS = 65_536


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


def describe(value: object) -> str:
    """Short description of a TOML value for error messages (no secrets: values are cut)."""
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)
    if isinstance(value, dict | list) or (isinstance(value, str) and len(value) > 40):
        return kind
    text = repr(value)
    if len(text) > 40:
        return kind
    return f"{kind} {text}"


class Issues:
    """Collects configuration problems for one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[ConfigIssue] = []

    def add(self, path: str, message: str) -> None:
        """Record one problem at a dotted key path."""
        self.items.append(ConfigIssue(self.file, path, message))

    def raise_if_any(self) -> None:
        """Raise :class:`ConfigError` carrying every recorded problem."""
        if self.items:
            raise ConfigError(self.items)


_BOM = b"\xef\xbb\xbf"


def load_toml(path: str | Path, issues: Issues) -> dict[str, Any]:
    """Read and parse a TOML file with tomli (TOML 1.1 on every interpreter), within limits.

    Every problem (missing, unreadable, too large, invalid TOML, beyond a limit) is
    recorded in ``issues`` and ``{}`` returned; nothing raises.
    """
    try:
        with open(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                issues.add("", "is not a regular file, expected a TOML file")
                return {}
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        issues.add("", "file not found")
        return {}
    except PermissionError:
        issues.add("", "permission denied")
        return {}
    except IsADirectoryError:
        issues.add("", "is a directory, expected a TOML file")
        return {}
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        issues.add("", f"cannot be read: {getattr(exc, 'strerror', None) or exc}")
        return {}
    if len(raw) > MAX_FILE_BYTES:
        issues.add("", f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, expected a config file")
        return {}
    try:
        data = tomli.loads(raw.removeprefix(_BOM).decode("utf-8"))
    except UnicodeDecodeError:
        issues.add("", "not UTF-8 text")
        return {}
    except tomli.TOMLDecodeError as exc:
        issues.add("", f"invalid TOML: {exc}")
        return {}
    except RecursionError:
        issues.add("", f"nested too deeply, expected at most {MAX_DEPTH} levels")
        return {}
    before = len(issues.items)
    check_limits(data, issues)
    return data if len(issues.items) == before else {}


def check_limits(data: Mapping[str, Any], issues: Issues) -> None:
    """Record every key or value beyond the limits of this module (iterative: no recursion)."""
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, str):
            if len(value) > MAX_STRING_CHARS:
                issues.add(path, f"string of {len(value)} characters, at most {MAX_STRING_CHARS}")
            elif "\x00" in value:
                issues.add(path, "must not contain a NUL character")
            continue
        if not isinstance(value, dict | list):
            continue
        if depth >= MAX_DEPTH:
            issues.add(path, f"nested too deeply, expected at most {MAX_DEPTH} levels")
            continue
        if isinstance(value, list):
            stack.extend((f"{path}[{i}]", item, depth + 1) for i, item in enumerate(value))
            continue
        for key, item in value.items():
            shown = key if len(key) <= 40 else key[:40] + "..."
            child = f"{path}.{shown}" if path else shown
            if len(key) > MAX_KEY_CHARS:
                issues.add(child, f"key of {len(key)} characters, at most {MAX_KEY_CHARS}")
                continue
            if "\x00" in key:
                issues.add(child.replace("\x00", "\\0"), "key must not contain a NUL character")
                continue
            stack.append((child, item, depth + 1))


class Table:
    """Checked access to one TOML table at a known key path."""

    def __init__(self, data: Mapping[str, Any], path: str, issues: Issues) -> None:
        self.data = data
        self.path = path
        self.issues = issues
        self._used: set[str] = set()
        self._failed: set[str] = set()

    # -- helpers ---------------------------------------------------------
    def key_path(self, key: str) -> str:
        """Dotted path of a key in this table."""
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> None:
        """Record a problem for ``key`` of this table."""
        self._failed.add(key)
        self.issues.add(self.key_path(key), message)

    def ok(self, *keys: str) -> bool:
        """Whether none of ``keys`` had a problem recorded (guards checks that combine keys).

        A value that failed its own check was replaced by a placeholder; a rule that
        combines it with another key would report a second, misleading problem.
        """
        return self._failed.isdisjoint(keys)

    def has(self, key: str) -> bool:
        """Whether the key is present (does not mark it used)."""
        return key in self.data

    def key_names(self) -> list[str]:
        """Keys present in the table."""
        return list(self.data)

    def _fetch(self, key: str, default: Any, expected: str) -> tuple[bool, Any]:
        self._used.add(key)
        if key not in self.data:
            if default is REQUIRED:
                self.error(key, f"missing, expected {expected}")
            return False, default
        return True, self.data[key]

    def _bad(self, key: str, expected: str, value: object) -> None:
        self.error(key, f"expected {expected}, got {describe(value)}")

    # -- scalar getters ----------------------------------------------------
    def get_str(
        self,
        key: str,
        default: Any = REQUIRED,
        *,
        choices: tuple[str, ...] | None = None,
        nonempty: bool = True,
        check: Callable[[str], str | None] | None = None,
        expected: str = "a string",
    ) -> str:
        """A string; ``choices`` restricts it, ``check`` returns an error text or None."""
        if choices:
            expected = "one of " + ", ".join(repr(c) for c in choices)
        present, value = self._fetch(key, default, expected)
        if not present:
            return "" if default is REQUIRED else value
        if not isinstance(value, str) or (nonempty and not value):
            self._bad(key, expected if not nonempty else f"{expected} (non-empty)", value)
            return ""
        if choices and value not in choices:
            self._bad(key, expected, value)
            return value
        if check is not None and (problem := check(value)) is not None:
            self.error(key, problem)
        return value

    def get_int(
        self,
        key: str,
        default: Any = REQUIRED,
        *,
        min: int | None = None,
        max: int | None = None,
    ) -> int:
        """An integer within optional inclusive bounds (booleans are not integers)."""
        expected = "an integer" + _bounds(min, max)
        present, value = self._fetch(key, default, expected)
        if not present:
            return 0 if default is REQUIRED else value
        if isinstance(value, bool) or not isinstance(value, int):
            self._bad(key, expected, value)
            return 0 if default is REQUIRED or default is None else default
        if (min is not None and value < min) or (max is not None and value > max):
            self._bad(key, expected, value)
        return value

    def get_float(
        self,
        key: str,
        default: Any = REQUIRED,
        *,
        min: float | None = None,
        max: float | None = None,
        positive: bool = False,
    ) -> float:
        """A finite number (an integer is accepted and converted)."""
        expected = "a number" + (" > 0" if positive else _bounds(min, max))
        present, value = self._fetch(key, default, expected)
        if not present:
            return 0.0 if default is REQUIRED else value
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._bad(key, expected, value)
            return 0.0
        number = float(value)
        if (
            not math.isfinite(number)
            or (positive and number <= 0)
            or (min is not None and number < min)
            or (max is not None and number > max)
        ):
            self._bad(key, expected, value)
        return number

    def get_bool(self, key: str, default: Any = REQUIRED) -> bool:
        """A boolean (``true``/``false``, not 0/1 or strings)."""
        present, value = self._fetch(key, default, "true or false")
        if not present:
            return False if default is REQUIRED else value
        if not isinstance(value, bool):
            self._bad(key, "true or false", value)
            return False
        return value

    def get_enum(self, key: str, cls: type[E], default: Any = REQUIRED) -> E:
        """A string that names a member value of ``cls`` (case-sensitive)."""
        values = [str(m.value) for m in cls]
        expected = "one of " + ", ".join(repr(v) for v in values)
        present, value = self._fetch(key, default, expected)
        if not present:
            return next(iter(cls)) if default is REQUIRED else default
        for member in cls:
            if value == member.value:
                return member
        self._bad(key, expected, value)
        return next(iter(cls))

    def get_list(
        self,
        key: str,
        item: Callable[[Any], T | None],
        default: Any = REQUIRED,
        *,
        expected: str = "an array",
    ) -> list[T]:
        """An array whose items are converted by ``item`` (returning None means invalid)."""
        present, value = self._fetch(key, default, expected)
        if not present:
            return [] if default is REQUIRED else list(value)
        if not isinstance(value, list):
            self._bad(key, expected, value)
            return []
        out: list[T] = []
        for i, raw in enumerate(value):
            converted = item(raw)
            if converted is None:
                self.issues.add(
                    f"{self.key_path(key)}[{i}]", f"expected {expected}, got {describe(raw)}"
                )
            else:
                out.append(converted)
        return out

    def get_raw(self, key: str, default: Any = None) -> Any:
        """The raw value, marking the key used (for values parsed elsewhere)."""
        self._used.add(key)
        return self.data.get(key, default)

    # -- nested tables -----------------------------------------------------
    def table(self, key: str, *, required: bool = False) -> Table | None:
        """A sub-table, or None when absent (an error when ``required``)."""
        self._used.add(key)
        if key not in self.data:
            if required:
                self.error(key, "missing, expected a table")
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            self._bad(key, "a table", value)
            return None
        return Table(value, self.key_path(key), self.issues)

    def tables(self, key: str) -> list[tuple[str, Table]]:
        """A table of named tables (``[devices.press1]`` style), in file order."""
        sub = self.table(key)
        if sub is None:
            return []
        out: list[tuple[str, Table]] = []
        for name, value in sub.data.items():
            sub._used.add(name)
            if not isinstance(value, dict):
                sub._bad(name, "a table", value)
                continue
            out.append((name, Table(value, sub.key_path(name), self.issues)))
        return out

    def array_of_tables(self, key: str) -> list[Table]:
        """An array of tables (``[[shifts]]`` or ``x = [{...}, {...}]``)."""
        present, value = self._fetch(key, [], "an array of tables")
        if not present:
            return []
        if not isinstance(value, list):
            self._bad(key, "an array of tables", value)
            return []
        out: list[Table] = []
        for i, raw in enumerate(value):
            path = f"{self.key_path(key)}[{i}]"
            if not isinstance(raw, dict):
                self.issues.add(path, f"expected a table, got {describe(raw)}")
                continue
            out.append(Table(raw, path, self.issues))
        return out

    def finish(self) -> None:
        """Report every key of this table that no getter asked for, with a likely intended key."""
        known = sorted(self._used)
        for key in self.data:
            if key not in self._used:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
                self.error(
                    key, f"unknown key, did you mean {close[0]!r}?" if close else "unknown key"
                )


def _bounds(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""
