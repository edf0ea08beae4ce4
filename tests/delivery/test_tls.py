"""SMTPSender's TLS and AUTH against aiosmtpd with a throwaway certificate."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from otpcore.delivery import Message, SMTPSender, TransientFailure
from tests.delivery.smtp_server import Recorder, SMTPServer
from tests.net import free_port

NOW = datetime.now(UTC)

# aiosmtpd's server thread raises TLSSetupException when a client aborts the handshake (the
# point of the untrusted-certificate test) and leaves that connection's transport for the
# garbage collector, which may run during the next test. Both are the test server's, not the
# sender's: the sender's own connections are closed by aclose() and checked in test_smtp.py.
_SERVER_SIDE_NOISE = (
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def message() -> Message:
    return Message(
        recipient="ada@example.com",
        sender="login@example.com",
        subject="s",
        text="your code 123456",
        message_id="<tls@example.com>",
        date=NOW,
    )


@pytest.fixture
def starttls_server(certificate: tuple[Path, Path]) -> Iterator[SMTPServer]:
    server = SMTPServer(tls_context=server_context(certificate), users={"mailer": "s3cret"})
    server.start()
    yield server
    server.stop()


async def test_starttls_and_auth(
    starttls_server: SMTPServer, certificate: tuple[Path, Path]
) -> None:
    sender = SMTPSender(
        "127.0.0.1",
        starttls_server.port,
        tls="starttls",
        username="mailer",
        password="s3cret",
        tls_context=client_context(certificate),
    )
    await sender.send(message())
    await sender.send(message())
    [first, second] = starttls_server.recorder.received
    assert first.login == "mailer"
    assert first.peer == second.peer  # one connection, reused
    await sender.aclose()


async def test_a_wrong_password_is_not_delivered(
    starttls_server: SMTPServer, certificate: tuple[Path, Path]
) -> None:
    sender = SMTPSender(
        "127.0.0.1",
        starttls_server.port,
        tls="starttls",
        username="mailer",
        password="wrong",
        tls_context=client_context(certificate),
    )
    with pytest.raises(Exception, match="smtp 535") as failed:
        await sender.send(message())
    assert "wrong" not in str(failed.value)
    assert starttls_server.recorder.received == []


@_SERVER_SIDE_NOISE[0]
@_SERVER_SIDE_NOISE[1]
async def test_an_untrusted_certificate_is_refused(starttls_server: SMTPServer) -> None:
    sender = SMTPSender("127.0.0.1", starttls_server.port, tls="starttls", timeout=2)
    with pytest.raises(TransientFailure):
        await sender.send(message())
    assert starttls_server.recorder.received == []


@_SERVER_SIDE_NOISE[0]
@_SERVER_SIDE_NOISE[1]
async def test_implicit_tls(certificate: tuple[Path, Path]) -> None:
    recorder = Recorder()
    port = free_port()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, ssl_context=server_context(certificate)
    )
    controller.start()
    try:
        sender = SMTPSender(
            "127.0.0.1", port, tls="implicit", tls_context=client_context(certificate)
        )
        await sender.send(message())
        assert len(recorder.received) == 1
        await sender.aclose()
    finally:
        controller.stop()
