"""Open one asyncua client session for a link: security, identity, loss detection.

:func:`open_client` builds a :class:`asyncua.Client` from the link's device
settings, applies message security (creating the client certificate into
the state directory on first use), installs the server-certificate trust
check, chooses the user identity, and connects. Every failure is wrapped
into :class:`~edge_agent.errors.DeviceUnavailable` (so
:func:`drivers.base.run_link` retries with backoff) and the half-open client
is torn down.

Deliberately *not* done here: asyncua's ``auto_reconnect`` stays off and its
stale-subscription re-creation is disabled, because reconnection has one
owner (``run_link``) and silence is judged by the link's own watchdog.
asyncua's health probe (one server-state read per ``probe_s``) still runs:
it is the keepalive that detects a dead or hung session and fires
``on_lost``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

from asyncua import ua
from asyncua.crypto import security_policies

from drivers.opcua._ua import Client, UaError, UaStatusCodeError
from drivers.opcua.config import Identity, OpcuaDevice
from drivers.opcua.security import (
    TrustList,
    ensure_client_certificate,
    make_validator,
    trust_command,
)
from edge_agent.errors import DeviceUnavailable

log = logging.getLogger("edge_agent.drivers.opcua")

#: Transport-level failures asyncua raises besides ``UaError`` (not a subclass of it).
TRANSPORT_ERRORS = (ConnectionError, OSError, TimeoutError, asyncio.TimeoutError, UaError)


class _DropPublishLoopNoise(logging.Filter):
    """Drop asyncua's per-second "Publish iteration crashed" traceback while a session is dead.

    The link reports the loss once (via run_link); asyncua would otherwise log an
    ERROR with a full traceback every second until the session is closed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Publish iteration crashed")


def _install_log_filter() -> None:
    target = logging.getLogger("asyncua.client.ua_session.UaSession")
    if not any(isinstance(f, _DropPublishLoopNoise) for f in target.filters):
        target.addFilter(_DropPublishLoopNoise())


_install_log_filter()


def probe_interval_s(watchdog_s: float) -> float:
    """Health-probe period: a quarter of the watchdog bound, between 0.5 s and 10 s."""
    return min(10.0, max(0.5, watchdog_s / 4))


def _read_password(device: OpcuaDevice) -> str:
    if device.password_env is not None:
        password = os.environ.get(device.password_env)
        if password is None:
            raise DeviceUnavailable(
                f"device {device.name}: environment variable {device.password_env} "
                "(password_env) is not set"
            )
        return password
    assert device.password_file is not None  # noqa: S101 - guaranteed by parse_device
    try:
        return device.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise DeviceUnavailable(
            f"device {device.name}: cannot read password_file {device.password_file}: "
            f"{exc.strerror}"
        ) from exc


async def _quiet_disconnect(client: Client, timeout_s: float) -> None:
    """Tear down a session that failed or is being replaced (no data flows through it).

    The device's loss was already logged and counted by the link; a close that fails on a
    dead socket is expected, so it is logged at debug level only.
    """
    try:
        await asyncio.wait_for(client.disconnect(), timeout_s)
    except Exception as exc:  # any asyncua/socket error of a dead session
        log.debug("OPC-UA disconnect failed (session already gone): %r", exc)
    try:
        client.disconnect_socket()
    except Exception as exc:
        log.debug("OPC-UA socket close failed: %r", exc)


async def open_client(
    device: OpcuaDevice,
    *,
    on_lost: Callable[[Exception], Coroutine[Any, Any, None]],
    probe_s: float | None = None,
) -> Client:
    """Connect a client with the session settings of ``device`` (shared by its link).

    Args:
        device: Any device of the link (they share endpoint, security and identity).
        on_lost: Coroutine called by asyncua's supervisor when the session dies.
        probe_s: Health-probe period; default :func:`probe_interval_s` of the watchdog.

    Returns:
        The connected client.

    Raises:
        DeviceUnavailable: Connection refused, timeout, security or identity rejected,
            or an untrusted server certificate (:class:`UntrustedServerCertificate`).
    """
    timeout_s = device.timeout_ms / 1000
    client = Client(
        device.endpoint,
        timeout=timeout_s,
        watchdog_intervall=probe_s if probe_s is not None else probe_interval_s(device.watchdog_s),
        auto_reconnect=False,
    )
    # asyncua re-creates "stale" subscriptions on its own; the link's watchdog owns that
    # decision (and rebuilds the whole session), so push asyncua's threshold to infinity.
    client._stale_check_margin = float("inf")
    client.name = client.description = "edge-agent"
    client.session_timeout = max(60_000, int(device.watchdog_s * 4000))
    try:
        if device.secured or device.identity is Identity.CERTIFICATE:
            uri = await ensure_client_certificate(
                device.resolved_certificate, device.resolved_private_key
            )
            client.application_uri = uri
        if device.secured:
            policy = getattr(
                security_policies, f"SecurityPolicy{device.security_policy.asyncua_name}"
            )
            client.certificate_validator = make_validator(
                TrustList(device.resolved_trust_dir),
                endpoint=device.endpoint,
                command=trust_command(device.endpoint, device.state_dir, device.resolved_trust_dir),
            )
            await asyncio.wait_for(
                client.set_security(
                    policy,
                    str(device.resolved_certificate),
                    str(device.resolved_private_key),
                    mode=getattr(ua.MessageSecurityMode, device.security_mode.value),
                ),
                timeout_s * 2,
            )
        if device.identity is Identity.USERNAME:
            client.set_user(device.username or "")
            client.set_password(_read_password(device))
        elif device.identity is Identity.CERTIFICATE:
            await client.load_client_certificate(str(device.resolved_certificate))
            await client.load_private_key(device.resolved_private_key)
        client.connection_lost_callback = on_lost
        await asyncio.wait_for(client.connect(), timeout_s * 2)
    except DeviceUnavailable:
        await _quiet_disconnect(client, timeout_s)
        raise
    except UaStatusCodeError as exc:
        await _quiet_disconnect(client, timeout_s)
        name = ua.StatusCode(exc.code).name if hasattr(exc, "code") else type(exc).__name__
        raise DeviceUnavailable(f"{device.endpoint}: {name}") from exc
    except TRANSPORT_ERRORS as exc:
        await _quiet_disconnect(client, timeout_s)
        raise DeviceUnavailable(f"{device.endpoint}: {type(exc).__name__}: {exc}") from exc
    return client


async def close_client(client: Client, timeout_s: float) -> None:
    """Close the session and socket; never raises."""
    client.connection_lost_callback = None
    await _quiet_disconnect(client, timeout_s)
