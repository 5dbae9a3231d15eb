"""The SMTP sender against a real SMTP server (aiosmtpd on loopback): what arrives, logins,
STARTTLS (a trusted certificate, an untrusted one, a server that does not offer it), TLS from
the first byte, a server that is down or never answers, and refusals mapped to permanent or
retryable failures."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from services import settings_for
from shared.notify import NotificationError, send_email
from shared.settings import Settings
from tests.mail.smtp_server import HOST, Certificates, MailServer, make_certificates

TO = "outcomes.gmp@directory.invalid"
PASSWORD = "s3cret pa55/word"  # a space and a slash: percent-encoded in the URL
PASSWORD_IN_URL = "s3cret%20pa55%2Fword"


@pytest.fixture
def certificates(tmp_path) -> Certificates:
    return make_certificates(tmp_path / "ca")


@pytest.fixture
def servers() -> Iterator[Callable[..., MailServer]]:
    """Start mail servers for the test; each is stopped after it."""
    started: list[MailServer] = []

    def start(**options) -> MailServer:
        server = MailServer(**options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def smtp_settings(monkeypatch) -> Callable[..., Settings]:
    """The settings a service reads with ``SMTP_URL`` (and the other variables given) set."""

    def make(url: str, **env: str) -> Settings:
        monkeypatch.delenv("EMAIL_BACKEND", raising=False)
        monkeypatch.delenv("SMTP_CA_FILE", raising=False)
        monkeypatch.setenv("SMTP_URL", url)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = settings_for("dissemination")
        assert settings.email_backend == "smtp"
        return settings

    return make


def test_a_message_arrives_with_its_sender_recipient_subject_and_text(servers, smtp_settings):
    server = servers()
    settings = smtp_settings(server.url())
    message_id = send_email(settings, TO, "Intelligence package NCLCC-2026-000001 for GMP", "Read it at\nhttps://x")
    [received] = server.received
    assert received.mail_from == settings.mail_from and received.rcpt_tos == [TO]
    message = received.message
    assert (message["From"], message["To"]) == (settings.mail_from, TO)
    assert message["Subject"] == "Intelligence package NCLCC-2026-000001 for GMP"
    assert message["Message-ID"] == message_id
    assert message.get_content().strip() == "Read it at\nhttps://x"
    assert not received.over_tls and received.login is None


def test_credentials_in_the_url_log_in_percent_decoded(servers, smtp_settings):
    server = servers(password=PASSWORD)
    settings = smtp_settings(server.url(credentials=f"mailer:{PASSWORD_IN_URL}@"))
    send_email(settings, TO, "Subject", "Text")
    assert server.logins == [("mailer", False)]
    assert [r.login for r in server.received] == ["mailer"]


def test_a_wrong_password_is_refused_for_good_and_nothing_is_sent(servers, smtp_settings):
    server = servers(password=PASSWORD)
    settings = smtp_settings(server.url(credentials="mailer:not-the-password@"))
    with pytest.raises(NotificationError) as raised:
        send_email(settings, TO, "Subject", "Text")
    assert raised.value.permanent and "SMTP 535" in str(raised.value)
    assert "not-the-password" not in str(raised.value)
    assert server.received == []


def test_starttls_with_a_trusted_certificate_carries_the_login_and_the_message_encrypted(
    servers, smtp_settings, certificates
):
    server = servers(starttls=certificates.server_context(), password=PASSWORD)
    settings = smtp_settings(
        server.url(credentials=f"mailer:{PASSWORD_IN_URL}@", query="starttls=1"),
        SMTP_CA_FILE=str(certificates.ca_file),
    )
    send_email(settings, TO, "Subject", "Text")
    assert server.logins == [("mailer", True)]
    [received] = server.received
    assert received.over_tls and received.login == "mailer"


def test_a_server_not_offering_starttls_gets_neither_the_password_nor_the_message(servers, smtp_settings):
    # This server would take a login in clear: the sender must not offer it one.
    server = servers(password=PASSWORD)
    settings = smtp_settings(server.url(credentials=f"mailer:{PASSWORD_IN_URL}@", query="starttls=1"))
    with pytest.raises(NotificationError) as raised:
        send_email(settings, TO, "Subject", "Text")
    # Retryable: the server (or whoever stripped STARTTLS on the way) may be put right before
    # the job's last try, which then falls back to the next contact.
    assert not raised.value.permanent
    assert "does not offer STARTTLS" in str(raised.value)
    assert server.logins == [] and server.received == []


def test_a_certificate_from_another_authority_is_refused_before_anything_is_sent(
    servers, smtp_settings, certificates, tmp_path
):
    server = servers(starttls=certificates.server_context(), password=PASSWORD)
    other = make_certificates(tmp_path / "other", name="Another CA")
    settings = smtp_settings(
        server.url(credentials=f"mailer:{PASSWORD_IN_URL}@", query="starttls=1"), SMTP_CA_FILE=str(other.ca_file)
    )
    with pytest.raises(NotificationError) as raised:
        send_email(settings, TO, "Subject", "Text")
    assert not raised.value.permanent and "certificate is not trusted" in str(raised.value)
    assert server.logins == [] and server.received == []


def test_without_smtp_ca_file_a_test_authority_is_not_trusted(servers, smtp_settings, certificates):
    """The system's authorities are the default: a self-made certificate passes only when
    SMTP_CA_FILE names its authority (smtplib's own default would check nothing)."""
    server = servers(starttls=certificates.server_context())
    settings = smtp_settings(server.url(query="starttls=1"))
    with pytest.raises(NotificationError, match="certificate is not trusted"):
        send_email(settings, TO, "Subject", "Text")
    assert server.received == []


def test_smtps_speaks_tls_from_the_first_byte(servers, smtp_settings, certificates):
    server = servers(implicit_tls=certificates.server_context())
    settings = smtp_settings(server.url(scheme="smtps"), SMTP_CA_FILE=str(certificates.ca_file))
    send_email(settings, TO, "Subject", "Text")
    assert [r.over_tls for r in server.received] == [True]


def test_a_server_that_is_down_is_a_retryable_failure(smtp_settings):
    down = MailServer()  # its port is free: nothing listens there
    settings = smtp_settings(down.url())
    with pytest.raises(NotificationError) as raised:
        send_email(settings, TO, "Subject", "Text")
    assert not raised.value.permanent and "refused the connection" in str(raised.value)


def test_a_server_that_never_answers_is_given_up_after_the_timeout(smtp_settings):
    # A socket that listens but never greets: the connection opens, no reply ever comes.
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        settings = smtp_settings(f"smtp://{HOST}:{port}", EMAIL_TIMEOUT_SECONDS="1")
        assert settings.email_timeout_seconds == 1
        with pytest.raises(NotificationError) as raised:
            send_email(settings, TO, "Subject", "Text")
    assert not raised.value.permanent and "did not answer within 1 s" in str(raised.value)


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("550 5.1.1 No such mailbox", True), ("450 4.2.1 Mailbox busy, try later", False)],
)
def test_a_refused_recipient_is_permanent_on_5xx_and_retryable_on_4xx(servers, smtp_settings, reply, permanent):
    server = servers(refuse={TO: reply})
    settings = smtp_settings(server.url())
    with pytest.raises(NotificationError) as raised:
        send_email(settings, TO, "Subject", "Text")
    assert raised.value.permanent is permanent
    assert f"e-mail refused for {TO}: SMTP {reply[:3]}" in str(raised.value)
    assert server.received == []


def test_a_message_taken_is_sent_whatever_the_server_answers_to_quit(servers, smtp_settings):
    """A failure reported after the server took the message would have the job send it twice."""
    server = servers(quit_reply="421 4.3.0 Closing, shutting down")
    send_email(smtp_settings(server.url()), TO, "Subject", "Text")
    assert len(server.received) == 1


def test_the_password_is_not_in_the_settings_repr(smtp_settings):
    settings = smtp_settings(f"smtp://mailer:{PASSWORD_IN_URL}@{HOST}:2525?starttls=1")
    assert settings.smtp is not None and settings.smtp.password == PASSWORD
    assert PASSWORD not in repr(settings) and PASSWORD_IN_URL not in repr(settings)
