"""A real SMTP server for the tests (aiosmtpd, in a thread, on a free loopback port), and a test
certificate authority made with ``cryptography`` for its TLS.

The server keeps every message it accepted and every login tried; it can offer STARTTLS or
not, speak TLS from the first byte, ask for a password, and refuse chosen recipients with a
chosen reply. ``stop()`` and ``start()`` again on the same port play a mail server going down
and coming back.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.devredis import free_port

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Certificates:
    """A test CA (``ca_file``, what ``SMTP_CA_FILE`` names) and a certificate it signed for
    127.0.0.1 and localhost (``cert_file``, ``key_file``) for the server."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_certificates(directory: Path, name: str = "Test mail CA") -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths.cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths.key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    over_tls: bool
    login: str | None


@dataclass
class MailServer:
    """One aiosmtpd server. ``starttls``: a context to offer STARTTLS with; ``implicit_tls``: a
    context to speak TLS from the first byte; ``password``: logins are checked against
    ``user``/``password`` and required before mail; ``refuse``: recipient -> SMTP reply;
    ``quit_reply``: the answer to QUIT."""

    starttls: ssl.SSLContext | None = None
    implicit_tls: ssl.SSLContext | None = None
    user: str = "mailer"
    password: str | None = None
    refuse: dict[str, str] = field(default_factory=dict)
    quit_reply: str = "221 Bye"
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (login, over TLS) of each try
    _controller: Controller | None = None

    def start(self) -> MailServer:
        assert self._controller is None
        options: dict[str, Any] = {}
        if self.password is not None:
            # Logins are accepted in clear only when the server offers no TLS at all (the tests
            # of a plain smtp:// URL); with STARTTLS it asks for TLS first, as real servers do.
            options.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=self.starttls is not None,
            )
        # A fresh controller each time: a stopped one has closed its event loop.
        self._controller = Controller(
            _Handler(self),
            hostname=HOST,
            port=self.port,
            ready_timeout=10,
            ssl_context=self.implicit_tls,
            tls_context=self.starttls,
            **options,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def url(self, scheme: str = "smtp", credentials: str = "", query: str = "") -> str:
        return f"{scheme}://{credentials}{HOST}:{self.port}{'?' + query if query else ''}"

    def _authenticate(self, server, session, envelope, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, server.transport.get_extra_info("ssl_object") is not None))
        accepted = login == self.user and password == self.password
        return AuthResult(success=accepted, handled=False, auth_data=auth_data)


class _Handler:
    def __init__(self, owner: MailServer):
        self.owner = owner

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options: list[str]) -> str:
        if address in self.owner.refuse:
            return self.owner.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.owner.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                # Lines end in CRLF on the wire; as the sink keeps them, in LF.
                message=BytesParser(policy=policy.default).parsebytes(
                    envelope.original_content.replace(b"\r\n", b"\n")
                ),
                over_tls=server.transport.get_extra_info("ssl_object") is not None,
                login=session.login_data.decode() if session.login_data else None,
            )
        )
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server, session, envelope) -> str:
        return self.owner.quit_reply
