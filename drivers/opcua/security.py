"""Client certificate management and the server-certificate trust list.

* :func:`ensure_client_certificate` creates the client key (PEM) and a
  self-signed application certificate (DER, 365 days, asyncua
  ``setup_self_signed_certificate``) in the state directory on first start,
  and returns the application URI that the client must announce (it has to
  match the URI in the certificate, or servers answer
  ``BadCertificateUriInvalid``). A configured certificate is used as is.
* :class:`TrustList` is a directory of trusted server certificates (DER or
  PEM files). Trust is *pinning*: a server certificate is trusted when the
  exact certificate is in the directory and currently valid; no CA chains
  are evaluated.
* :func:`make_validator` builds the hook asyncua calls during CreateSession;
  an untrusted certificate raises :class:`UntrustedServerCertificate`
  naming its thumbprint and the command that trusts it.

Nothing here trusts anything automatically: adding a certificate to the
trust list happens only through ``edge-agent opcua trust`` (a logged,
explicit choice). Private keys are never logged or printed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from edge_agent.errors import DeviceUnavailable

log = logging.getLogger("edge_agent.drivers.opcua")

CERT_SUFFIXES = (".der", ".pem", ".crt", ".cer")


class UntrustedServerCertificate(DeviceUnavailable):
    """The server's certificate is not in the trust list (retried: it may be trusted later)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateInfo:
    """What a technician needs to decide whether to trust a certificate."""

    subject: str
    issuer: str
    thumbprint_sha1: str
    fingerprint_sha256: str
    not_before: dt.datetime
    not_after: dt.datetime
    application_uri: str | None

    def lines(self) -> list[str]:
        """Human-readable description, one fact per line."""
        return [
            f"Subject:      {self.subject}",
            f"Issuer:       {self.issuer}",
            f"App URI:      {self.application_uri or '-'}",
            f"Thumbprint:   {self.thumbprint_sha1} (SHA-1)",
            f"SHA-256:      {self.fingerprint_sha256}",
            f"Valid from:   {self.not_before.isoformat()}",
            f"Valid until:  {self.not_after.isoformat()}",
        ]


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


def thumbprint(cert: x509.Certificate) -> str:
    """OPC-UA certificate thumbprint: SHA-1 of the DER encoding, colon-separated hex."""
    return _colon_hex(hashlib.sha1(cert.public_bytes(Encoding.DER)).digest())  # noqa: S324 - OPC-UA defines SHA-1


def application_uri_of(cert: x509.Certificate) -> str | None:
    """The application URI in the certificate's subjectAltName, if any."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def describe(cert: x509.Certificate) -> CertificateInfo:
    """Summarise a certificate for display and logs."""
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        thumbprint_sha1=thumbprint(cert),
        fingerprint_sha256=_colon_hex(hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        application_uri=application_uri_of(cert),
    )


def load_certificate(data: bytes) -> x509.Certificate:
    """Load a DER or PEM certificate from bytes."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def default_application_uri() -> str:
    """Application URI used for certificates the agent creates itself."""
    return f"urn:{socket.gethostname()}:edge-agent"


async def ensure_client_certificate(cert_path: Path, key_path: Path) -> str:
    """Make sure a client certificate and key exist; return the certificate's application URI.

    When both files exist they are used as they are (the URI is read from the
    certificate). When the key or certificate is missing, a new key pair and
    self-signed certificate are created (directories ``0700``, key ``0600``).

    Raises:
        DeviceUnavailable: When the files cannot be created or read.
    """
    # Small local files read once per connect: blocking briefly is acceptable here.
    if cert_path.is_file() and key_path.is_file():  # noqa: ASYNC240
        try:
            cert = load_certificate(cert_path.read_bytes())  # noqa: ASYNC240
        except (OSError, ValueError) as exc:
            raise DeviceUnavailable(f"cannot read client certificate {cert_path}: {exc}") from exc
        uri = application_uri_of(cert)
        if uri is None:
            raise DeviceUnavailable(
                f"client certificate {cert_path} has no application URI in subjectAltName"
            )
        return uri
    # Imported here: cert_gen pulls in anyio and cryptography's key generation.
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    uri = default_application_uri()
    try:
        for directory in {cert_path.parent, key_path.parent}:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        await setup_self_signed_certificate(
            key_path,
            cert_path,
            uri,
            socket.gethostname(),
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            {
                "commonName": f"edge-agent@{socket.gethostname()}",
                "organizationName": "edge-agent",
            },
        )
        # Not via umask (process-wide, would race with other threads creating files);
        # the key sits in a 0700 directory until this chmod.
        key_path.chmod(0o600)  # noqa: ASYNC240 - one syscall on first start
    except OSError as exc:
        raise DeviceUnavailable(
            f"cannot create client certificate in {cert_path.parent}: {exc}"
        ) from exc
    log.warning("Created OPC-UA client certificate path=%s uri=%s", cert_path, uri)
    return uri


class TrustList:
    """A directory of trusted server certificates (exact-certificate pinning)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def certificates(self) -> list[x509.Certificate]:
        """Every readable certificate in the directory (unreadable files are skipped and logged)."""
        if not self.directory.is_dir():
            return []
        out: list[x509.Certificate] = []
        for path in sorted(self.directory.iterdir()):
            if path.suffix.lower() not in CERT_SUFFIXES:
                continue
            try:
                out.append(load_certificate(path.read_bytes()))
            except (OSError, ValueError) as exc:
                log.warning(
                    "Skipping unreadable trusted certificate path=%s error=%r", path, str(exc)
                )
        return out

    def is_trusted(self, cert: x509.Certificate) -> bool:
        """Whether exactly this certificate is in the trust list."""
        der = cert.public_bytes(Encoding.DER)
        return any(c.public_bytes(Encoding.DER) == der for c in self.certificates())

    def add(self, cert: x509.Certificate) -> Path:
        """Store a certificate as ``<thumbprint>.der``; return its path."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / (thumbprint(cert).replace(":", "").lower() + ".der")
        path.write_bytes(cert.public_bytes(Encoding.DER))
        return path


def trust_command(endpoint: str, state_dir: Path, trust_dir: Path) -> str:
    """The command line that trusts a server's certificate for this configuration."""
    default_trust = state_dir / "opcua" / "trusted"
    where = f"--state-dir {state_dir}" if trust_dir == default_trust else f"--trust-dir {trust_dir}"
    return f"edge-agent opcua trust --endpoint {endpoint} {where}"


def make_validator(
    trust: TrustList, *, endpoint: str, command: str
) -> Callable[[x509.Certificate, object], Awaitable[None]]:
    """Build the asyncua ``certificate_validator`` hook for one link.

    Raises (from the hook):
        UntrustedServerCertificate: When the certificate is unknown or not valid now.
    """

    async def validate(cert: x509.Certificate, _app: object) -> None:
        info = describe(cert)
        if not trust.is_trusted(cert):
            raise UntrustedServerCertificate(
                f"server certificate of {endpoint} is not trusted "
                f"(thumbprint {info.thumbprint_sha1}, "
                f"subject {info.subject!r}); check the thumbprint with the server's administrator, "
                f"then run: {command}"
            )
        now = dt.datetime.now(dt.timezone.utc)
        if not info.not_before <= now <= info.not_after:
            raise UntrustedServerCertificate(
                f"trusted server certificate of {endpoint} is outside its validity "
                f"({info.not_before.isoformat()} .. {info.not_after.isoformat()}, "
                f"thumbprint {info.thumbprint_sha1})"
            )

    return validate
