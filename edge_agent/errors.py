"""Error taxonomy of the agent, in one place.

Library exceptions (pymodbus, asyncua, paho, sqlite3) are wrapped at the
boundary where they occur and re-raised ``from`` the original, so the rest of
the agent handles a small closed set. Rules: do not log what you raise, log
only what you survive; messages carry device, endpoint, unit id and address.
"""

from __future__ import annotations

from dataclasses import dataclass


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file: where it is and what was expected."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"


class ConfigError(AgentError):
    """Fatal: the configuration is invalid. Carries every issue found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class DeviceUnavailable(AgentError):
    """Transient: the device does not answer (timeout, refused, closed). Retried with backoff."""


class DecodeError(AgentError):
    """A value could not be decoded for one tag (wrong length, invalid UTF-8, NaN policy)."""


class StorageFull(AgentError):
    """The buffer reached its disk budget or the disk is full."""


class UplinkError(AgentError):
    """The MQTT uplink failed in a way the caller must see (bad TLS setup, refused auth)."""
