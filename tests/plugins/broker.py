"""Fixture plugin: a private Mosquitto broker on a free loopback port, plus a subscriber helper.

``mosquitto`` starts one broker per test (anonymous, plain TCP on 127.0.0.1) and
stops it by PID afterwards. ``mosquitto_factory`` starts brokers with options
(persistence, TLS listener, fixed port for restarts). Every wait is bounded in
time; nothing binds anything but loopback. :class:`MqttCollector` subscribes with
paho (VERSION2 callbacks, ``loop_start`` thread) and collects messages under a
lock so tests can wait for a predicate with a timeout instead of sleeping.

This plugin does not install anything unless it runs as root and mosquitto is
missing (then ``apt-get install -y mosquitto``); otherwise it fails with the
install command.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def find_mosquitto() -> str:
    """Path of the mosquitto binary, installing it with apt when root; fails the test otherwise."""
    for candidate in ("/usr/sbin/mosquitto", shutil.which("mosquitto")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "mosquitto"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=300,
        )
        if os.access("/usr/sbin/mosquitto", os.X_OK):
            return "/usr/sbin/mosquitto"
    pytest.fail(
        "mosquitto is not installed: run `sudo apt-get install -y mosquitto` "
        "(or `make system-deps`) and re-run the tests",
        pytrace=False,
    )


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    """Broker-side TLS material (PEM files)."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False


@dataclass(slots=True, kw_only=True)
class Mosquitto:
    """A private broker process; ``start()`` after ``stop()``/``kill()`` reuses the same port."""

    binary: str
    workdir: Path
    port: int
    persistence: bool = False
    tls: TlsFiles | None = None
    extra: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        """PID of the running broker (fails when it is not running)."""
        assert self.proc is not None, "broker is not running"
        return self.proc.pid

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def log_text(self) -> str:
        """The broker's log so far (for failure messages)."""
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 1000000",
            "max_inflight_messages 0",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root, mosquitto switches to user "mosquitto", which cannot write our tmp dir.
            lines.append("user root")
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.workdir}/",
                "autosave_interval 1",
            ]
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
            ]
        lines += list(self.extra)
        path = self.workdir / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> None:
        """Start (or restart) the broker and wait until it accepts TCP connections."""
        if self.running:
            return
        conf = self._write_config()
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self.proc.returncode} on port {self.port}:\n"
                    f"{self.log_text}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(
            f"mosquitto did not accept connections on port {self.port} within {START_TIMEOUT_S} s"
        )

    def stop(self) -> None:
        """SIGTERM the broker (it saves persistence), SIGKILL after a bound; wait for exit."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the broker (no persistence save) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc = None


MosquittoFactory = Callable[..., Mosquitto]


@pytest.fixture
def mosquitto_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoFactory]:
    """Factory ``make(persistence=, tls=, port=, start=, extra=) -> Mosquitto``.

    Every broker it made is stopped at teardown.

    ``extra`` lines are appended to mosquitto.conf (e.g. ``acl_file ...``).
    """
    binary = find_mosquitto()
    started: list[Mosquitto] = []

    def make(
        *,
        persistence: bool = False,
        tls: TlsFiles | None = None,
        port: int | None = None,
        start: bool = True,
        extra: tuple[str, ...] = (),
    ) -> Mosquitto:
        broker = Mosquitto(
            binary=binary,
            workdir=tmp_path_factory.mktemp("mosquitto"),
            port=port or free_port(),
            persistence=persistence,
            tls=tls,
            extra=extra,
        )
        started.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: MosquittoFactory) -> Mosquitto:
    """A running anonymous broker on a free 127.0.0.1 port, stopped after the test."""
    return mosquitto_factory()


@dataclass(frozen=True, slots=True)
class Received:
    """One message the collector saw."""

    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float
    dup: bool = False  # the broker's redelivery flag (QoS 1 at-least-once)

    def json(self) -> Any:
        """The payload decoded as JSON."""
        import json

        return json.loads(self.payload)


def first_deliveries(messages: list[Received]) -> list[Received]:
    """The capture without the broker's redeliveries of messages already received.

    QoS 1 is at-least-once: a persistent subscriber whose PUBACK had not reached
    the broker when it stopped gets the message again after the restart, flagged
    DUP, possibly after later messages (a host application de-duplicates them).
    """
    seen: set[tuple[str, bytes]] = set()
    kept: list[Received] = []
    for m in messages:
        key = (m.topic, m.payload)
        if m.dup and key in seen:
            continue
        seen.add(key)
        kept.append(m)
    return kept


class MqttCollector:
    """Subscribes to a topic filter on a broker and collects what arrives (thread-safe).

    Use as a context manager; ``wait_for(predicate, timeout)`` blocks on a
    condition variable (no polling sleeps) and returns whether the predicate held.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic: str = "#",
        *,
        qos: int = 1,
        client_id: str = "",
        clean: bool = True,
        protocol: int = mqtt.MQTTv311,
    ) -> None:
        self.host, self.port, self.topic, self.qos = host, port, topic, qos
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        kwargs: dict[str, Any] = {"client_id": client_id, "protocol": protocol}
        if protocol != mqtt.MQTTv5:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.topic, qos=self.qos)

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(
                Received(
                    message.topic,
                    bytes(message.payload),
                    bool(message.retain),
                    message.qos,
                    time.monotonic(),
                    bool(message.dup),
                )
            )
            self._cond.notify_all()

    def start(self, timeout: float = 10.0) -> MqttCollector:
        """Connect, subscribe and wait (bounded) for the SUBACK."""
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise TimeoutError(f"collector did not subscribe to {self.topic!r} within {timeout} s")
        return self

    def stop(self) -> None:
        """Disconnect and stop paho's thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> MqttCollector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[Received]:
        """A copy of the messages received so far."""
        with self._cond:
            return list(self.messages)

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float) -> bool:
        """Wait until ``predicate(messages)`` holds or ``timeout`` s pass; returns the result."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if predicate(self.messages):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))

    def wait_count(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` messages arrived."""
        return self.wait_for(lambda msgs: len(msgs) >= count, timeout)


@dataclass(frozen=True, slots=True, kw_only=True)
class TestPki:
    """A throw-away PKI: CA, broker certificate (SAN 127.0.0.1/localhost), client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def broker_tls(self, *, require_certificate: bool = False) -> TlsFiles:
        """The broker-side TLS files for :func:`mosquitto_factory`."""
        return TlsFiles(
            cafile=self.ca,
            certfile=self.server_cert,
            keyfile=self.server_key,
            require_certificate=require_certificate,
        )


def make_test_pki(directory: Path, name: str = "test", *, san_ip: bool = True) -> TestPki:
    """Generate a CA and leaf certificates with ``cryptography`` (EC P-256, 1 day validity).

    The broker certificate names ``localhost`` and, unless ``san_ip`` is false, ``127.0.0.1``.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def write_key(k: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(
            k.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return path

    def write_cert(cert: x509.Certificate, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        common_name: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        k = key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_name)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), k

    server, server_key = leaf(
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost")]
        + ([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))] if san_ip else []),
    )
    client, client_key = leaf("edge-agent-test", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return TestPki(
        ca=write_cert(ca_cert, directory / "ca.pem"),
        server_cert=write_cert(server, directory / "server.pem"),
        server_key=write_key(server_key, directory / "server.key"),
        client_cert=write_cert(client, directory / "client.pem"),
        client_key=write_key(client_key, directory / "client.key"),
    )
