"""Integration tests of message security, user identity and the server-certificate trust list.

One secured server (Basic256Sha256 and Aes128_Sha256_RsaOaep, Sign and
SignAndEncrypt; anonymous, username and certificate identities) serves the
module. The client certificate is created by the driver into a temporary
state directory on first use; the server certificate is trusted through the
``edge-agent opcua trust`` code path.
"""

from __future__ import annotations

import asyncio
import io
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import ua
from cryptography import x509

from drivers.opcua.config import Identity, OpcuaDevice, OpcuaTag, SecurityMode, SecurityPolicy
from drivers.opcua.link import OpcuaLink
from drivers.opcua.nodes import parse_node_id
from drivers.opcua.security import UntrustedServerCertificate, application_uri_of, thumbprint
from edge_agent.commands.opcua import run_trust
from edge_agent.errors import DeviceUnavailable
from edge_agent.model import Quality
from tests.drivers.opcua.server_kit import (
    NS_URI,
    PASSWORD,
    USER,
    SimServer,
    free_port,
    start_server,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

POLICIES = [
    ua.SecurityPolicyType.Basic256Sha256_Sign,
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
]
PASSWORD_ENV = "TEST_OPCUA_PASSWORD"  # noqa: S105 - the name of a variable, not a secret
TAG = OpcuaTag(name="product", node=parse_node_id(f"nsu={NS_URI};s=M1.Product"))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def secure_sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SimServer]:
    server = await start_server(
        free_port(), security=POLICIES, cert_dir=tmp_path_factory.mktemp("server")
    )
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def trusted_state(secure_sim: SimServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory whose trust list holds the server certificate (via the trust command)."""
    state = tmp_path_factory.mktemp("state")
    rc = await asyncio.to_thread(
        run_trust,
        secure_sim.endpoint,
        state / "opcua" / "trusted",
        assume_yes=True,
        stdout=io.StringIO(),
    )
    assert rc == 0
    return state


def _device(
    sim: SimServer, state: Path, policy: SecurityPolicy, mode: SecurityMode, **kw: object
) -> OpcuaDevice:
    return OpcuaDevice(
        name="m1",
        endpoint=sim.endpoint,
        tags=(TAG,),
        security_policy=policy,
        security_mode=mode,
        state_dir=state,
        timeout_ms=2000,
        **kw,  # type: ignore[arg-type]
    )


async def _read_once(device: OpcuaDevice) -> object:
    link = OpcuaLink([device])
    await link.connect()
    try:
        result = await asyncio.wait_for(link.poll(), 5)
    finally:
        await link.close()
    reading = result.batches[0][0]
    assert reading.quality is Quality.GOOD
    return reading.value


@pytest.mark.parametrize(
    ("policy", "mode", "identity"),
    [
        (SecurityPolicy.BASIC256SHA256, SecurityMode.SIGN, Identity.ANONYMOUS),
        (SecurityPolicy.BASIC256SHA256, SecurityMode.SIGN_AND_ENCRYPT, Identity.USERNAME),
        (SecurityPolicy.BASIC256SHA256, SecurityMode.SIGN_AND_ENCRYPT, Identity.ANONYMOUS),
        (SecurityPolicy.AES128_SHA256_RSAOAEP, SecurityMode.SIGN, Identity.USERNAME),
        (SecurityPolicy.AES128_SHA256_RSAOAEP, SecurityMode.SIGN_AND_ENCRYPT, Identity.ANONYMOUS),
        (SecurityPolicy.AES128_SHA256_RSAOAEP, SecurityMode.SIGN_AND_ENCRYPT, Identity.CERTIFICATE),
    ],
)
async def test_secured_sessions_read_values(
    secure_sim: SimServer,
    trusted_state: Path,
    monkeypatch: pytest.MonkeyPatch,
    policy: SecurityPolicy,
    mode: SecurityMode,
    identity: Identity,
) -> None:
    """Each policy/mode/identity combination connects to a trusted server and reads a good value."""
    extra: dict[str, object] = {"identity": identity}
    if identity is Identity.USERNAME:
        monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
        extra.update(username=USER, password_env=PASSWORD_ENV)
    assert await _read_once(_device(secure_sim, trusted_state, policy, mode, **extra)) == "widget"


async def test_client_certificate_created_once_with_matching_uri(
    secure_sim: SimServer, trusted_state: Path
) -> None:
    """The client key/cert are created in the state dir once (key 0600) and then reused."""
    device = _device(secure_sim, trusted_state, SecurityPolicy.BASIC256SHA256, SecurityMode.SIGN)
    await _read_once(device)
    cert_path, key_path = device.resolved_certificate, device.resolved_private_key
    first = cert_path.read_bytes()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    await _read_once(device)
    assert cert_path.read_bytes() == first
    uri = application_uri_of(x509.load_der_x509_certificate(first))
    assert uri is not None
    assert uri.endswith(":edge-agent")


async def test_untrusted_server_certificate_is_rejected_with_thumbprint(
    secure_sim: SimServer, tmp_path: Path
) -> None:
    """An empty trust list rejects the server, naming its thumbprint and the trust command."""
    device = _device(
        secure_sim, tmp_path, SecurityPolicy.BASIC256SHA256, SecurityMode.SIGN_AND_ENCRYPT
    )
    link = OpcuaLink([device])
    with pytest.raises(UntrustedServerCertificate) as info:
        await link.connect()
    server_cert = secure_sim.server.iserver.certificate
    message = str(info.value)
    assert thumbprint(server_cert) in message
    assert (
        f"edge-agent opcua trust --endpoint {secure_sim.endpoint} --state-dir {tmp_path}" in message
    )
    assert isinstance(info.value, DeviceUnavailable)  # run_link retries: trusting later heals it


async def test_wrong_password_is_device_unavailable(
    secure_sim: SimServer, trusted_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected password fails the connect with the server's status name, never the password."""
    monkeypatch.setenv(PASSWORD_ENV, "wrong-password")
    device = _device(
        secure_sim,
        trusted_state,
        SecurityPolicy.BASIC256SHA256,
        SecurityMode.SIGN_AND_ENCRYPT,
        identity=Identity.USERNAME,
        username=USER,
        password_env=PASSWORD_ENV,
    )
    with pytest.raises(DeviceUnavailable, match="Bad") as info:
        await OpcuaLink([device]).connect()
    assert "wrong-password" not in str(info.value)


async def test_trust_refuses_without_confirmation(secure_sim: SimServer, tmp_path: Path) -> None:
    """Without --yes and a terminal nothing is trusted; 'yes' typed on a terminal trusts."""
    out = io.StringIO()
    rc = await asyncio.to_thread(
        run_trust, secure_sim.endpoint, tmp_path / "trusted", stdout=out, stdin=io.StringIO("y\n")
    )
    assert rc == 1
    assert "refusing to trust without --yes" in out.getvalue()
    assert not (tmp_path / "trusted").exists() or not any((tmp_path / "trusted").iterdir())

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = io.StringIO()
    rc = await asyncio.to_thread(
        run_trust, secure_sim.endpoint, tmp_path / "trusted", stdout=out, stdin=Tty("yes\n")
    )
    assert rc == 0
    text = out.getvalue()
    assert "Thumbprint:" in text
    assert "Valid until:" in text
    assert "Trusted:" in text
    assert len(list((tmp_path / "trusted").iterdir())) == 1
    assert "trusted endpoint=" in (tmp_path / "trust-audit.log").read_text()


async def test_browse_cli_on_secured_server(
    secure_sim: SimServer, trusted_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`edge-agent browse` with a security policy uses the state dir certificate and trust list."""
    from edge_agent import cli

    args = ["browse", secure_sim.endpoint, "--path", "Objects/M1", "--depth", "1"]
    args += ["--security-policy", "Basic256Sha256", "--security-mode", "SignAndEncrypt"]
    rc = await asyncio.to_thread(cli.main, [*args, "--state-dir", str(trusted_state)])
    assert rc == 0
    assert "Product  [Variable]" in capsys.readouterr().out
    rc = await asyncio.to_thread(cli.main, [*args, "--state-dir", str(trusted_state / "empty")])
    assert rc == 1
    assert "is not trusted" in capsys.readouterr().err
