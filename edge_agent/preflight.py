"""Pre-flight checks: what a valid configuration still needs from the machine it runs on.

:func:`edge_agent.config.load_config` validates the file alone and does no I/O.
A file can be valid and still fail at start: the CA certificate it names is
missing, the password variable is unset, the state directory cannot be
created, a host is not a host at all. :func:`preflight` finds those before
anything starts, for ``edge-agent check-config`` and ``edge-agent run`` alike,
so "check-config says OK" means "the agent will start".

Findings have a level. ``error``: the agent cannot work like this (``run``
refuses to start, ``check-config`` exits 2). ``warning``: it would start but
is most likely not what was meant, such as a placeholder address copied from
the example file (``check-config --strict`` treats warnings as errors).

What it checks (each finding names the dotted key and the value):

* hosts and endpoints are syntactically valid (an IPv4 address has four
  numbers 0..255, a name has letters, digits, ``-``, ``.``) - always;
* documentation addresses (RFC 5737/3849 ranges, RFC 2606 names such as
  ``broker.example.net``) are flagged as placeholders - always;
* with ``environment=True`` (the default): files the agent will read (MQTT
  CA, certificate, key and password file; OPC-UA certificate, key, password
  file and trust directory) are readable, password variables are set, the
  state directory and the buffer's directory exist or can be created and are
  writable, serial ports exist (a warning: an adapter may be plugged later).

What it does not do: no network (no DNS, no connect; ``check-config --probe``
does that), and it never creates or changes anything. Device settings are read
through the attribute names the drivers use (``transport.host``, ``endpoint``,
``password_env``, ``client_certificate``, ...), so a new protocol gets these
checks by using the same names.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from edge_agent.config import AgentConfig

__all__ = [
    "Finding",
    "dir_problem",
    "file_problem",
    "host_problem",
    "placeholder_problem",
    "preflight",
]

Level = Literal["error", "warning"]

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_NUMERIC = re.compile(r"^[0-9.]+$")
# RFC 5737 (IPv4) and RFC 3849 (IPv6) documentation ranges: never a real device.
_DOC_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)
# RFC 2606 / RFC 6761 names reserved for examples and documentation.
_DOC_DOMAINS = ("example.com", "example.net", "example.org", "example", "invalid")


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found before start: its level, the dotted key path and what is wrong."""

    level: Level
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def host_problem(host: str) -> str | None:
    """Why ``host`` is not a syntactically valid host name or IP address, or None.

    Examples:
        ``"999.1.1.1"`` (an IPv4 address with a part above 255) and ``"not a host!"``
        are problems; ``"plc-3.line1.local"``, ``"10.0.0.5"`` and ``"::1"`` are fine.
    """
    if not host:
        return "empty host"
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.strip("[]"))
        except ValueError:
            return f"{host!r} is not a valid IPv6 address"
        return None
    if _NUMERIC.match(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{host!r} is not a valid IPv4 address (four numbers 0..255 separated by dots)"
        return None
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        return f"{host!r} is not a valid host name (letters, digits, '-' and '.'; or an IP address)"
    return None


def placeholder_problem(host: str) -> str | None:
    """A warning text when ``host`` is a documentation address (RFC 5737/3849/2606), or None."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        name = host.rstrip(".").lower()
        for domain in _DOC_DOMAINS:
            if name == domain or name.endswith("." + domain):
                return (
                    f"{host!r} is a placeholder (a name reserved for examples, RFC 2606); "
                    "put the real address here"
                )
        return None
    if any(address in net for net in _DOC_NETS):
        return (
            f"{host!r} is a placeholder (a documentation address, never a real device); "
            "put the real address here"
        )
    return None


def file_problem(path: Path) -> str | None:
    """Why the agent could not read the file at ``path``, or None when it can."""
    try:
        if not path.exists():
            return f"{path} does not exist"
        if path.is_dir():
            return f"{path} is a directory, expected a file"
    except OSError as exc:  # e.g. a parent directory the user may not enter
        return f"{path}: {exc.strerror}"
    if not os.access(path, os.R_OK):
        return f"{path} is not readable by this user (check owner and mode)"
    return None


def dir_problem(path: Path, *, must_exist: bool = False) -> str | None:
    """Why ``path`` cannot be used as a writable directory (or created as one), or None."""
    try:
        if path.exists():
            if not path.is_dir():
                return f"{path} is a file, expected a directory"
            if not os.access(path, os.W_OK | os.X_OK):
                return f"{path} is not writable by this user (check owner and mode)"
            return None
        if must_exist:
            return f"{path} does not exist"
        ancestor = path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            return f"{path} cannot be created: {ancestor} is a file"
        if not os.access(ancestor, os.W_OK | os.X_OK):
            return f"{path} cannot be created: {ancestor} is not writable by this user"
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    return None


def _host_findings(path: str, host: str) -> Iterator[Finding]:
    problem = host_problem(host)
    if problem is not None:
        yield Finding("error", path, problem)
        return
    placeholder = placeholder_problem(host)
    if placeholder is not None:
        yield Finding("warning", path, placeholder)


def _secret_findings(
    prefix: str, env_name: str | None, password_file: Path | None, environ: Mapping[str, str]
) -> Iterator[Finding]:
    if env_name and env_name not in environ:
        yield Finding(
            "error",
            f"{prefix}.password_env",
            f"environment variable {env_name} is not set (under systemd: "
            "systemctl edit edge-agent, then Environment= or EnvironmentFile=)",
        )
    if password_file is not None and (problem := file_problem(password_file)) is not None:
        yield Finding("error", f"{prefix}.password_file", problem)


def _mqtt_findings(
    config: AgentConfig, environment: bool, environ: Mapping[str, str]
) -> Iterator[Finding]:
    mqtt = config.mqtt
    yield from _host_findings("mqtt.host", mqtt.host)
    if not environment:
        return
    yield from _secret_findings("mqtt", mqtt.password_env, mqtt.password_file, environ)
    for key in ("ca_file", "cert_file", "key_file"):
        value: Path | None = getattr(mqtt, key)
        if value is not None and (problem := file_problem(value)) is not None:
            yield Finding("error", f"mqtt.{key}", problem)


def _device_findings(
    name: str, dev: Any, environment: bool, environ: Mapping[str, str]
) -> Iterator[Finding]:
    prefix = f"devices.{name}"
    transport = getattr(dev, "transport", None)
    host = getattr(transport, "host", None)
    if isinstance(host, str):
        yield from _host_findings(f"{prefix}.endpoint", host)
    endpoint = getattr(dev, "endpoint", None)
    if isinstance(endpoint, str) and "://" in endpoint:
        try:
            url_host = urlsplit(endpoint).hostname
        except ValueError:
            url_host = None
        if url_host:
            yield from _host_findings(f"{prefix}.endpoint", url_host)
    if not environment:
        return
    serial = getattr(transport, "port", None)
    if isinstance(serial, str) and not os.path.exists(serial):
        yield Finding(
            "warning",
            f"{prefix}.serial_port",
            f"{serial} does not exist (adapter unplugged or another name? "
            "ls -l /dev/serial/by-id); the agent retries until it appears",
        )
    yield from _secret_findings(
        prefix, getattr(dev, "password_env", None), getattr(dev, "password_file", None), environ
    )
    for key in ("client_certificate", "client_private_key"):
        value = getattr(dev, key, None)
        if isinstance(value, Path) and (problem := file_problem(value)) is not None:
            yield Finding("error", f"{prefix}.{key}", problem)
    trust = getattr(dev, "trust_dir", None)
    if isinstance(trust, Path) and (problem := dir_problem(trust, must_exist=True)) is not None:
        yield Finding("error", f"{prefix}.trust_dir", problem)


def preflight(
    config: AgentConfig,
    *,
    environment: bool = True,
    environ: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Every problem the loaded ``config`` would meet at start on this machine.

    Args:
        config: A configuration that passed :func:`~edge_agent.config.load_config`.
        environment: Also check files, variables and directories of *this* machine
            (``False`` checks a file meant for another machine: syntax and placeholders only).
        environ: Environment variables (default ``os.environ``).

    Returns:
        Findings, errors and warnings, in file order (agent, storage, mqtt, devices).
    """
    env = os.environ if environ is None else environ
    found: list[Finding] = []
    if environment:
        state_dir = config.agent.state_dir
        if (problem := dir_problem(state_dir)) is not None:
            found.append(Finding("error", "agent.state_dir", problem))
        db = config.storage.path
        if db.parent != state_dir and (problem := dir_problem(db.parent)) is not None:
            found.append(Finding("error", "storage.path", problem))
        elif db.exists() and not os.access(db, os.R_OK | os.W_OK):
            found.append(
                Finding("error", "storage.path", f"{db} is not readable and writable by this user")
            )
    found.extend(_mqtt_findings(config, environment, env))
    for name, dev in config.devices.items():
        found.extend(_device_findings(name, dev, environment, env))
    return found
