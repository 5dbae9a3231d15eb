"""Notification senders: a webhook signed by the Standard Webhooks scheme, and e-mail, and
``send_with_fallback``, which tries an organisation's contacts in turn.

Each send makes one attempt and raises ``NotificationError`` on failure; the RQ job that calls
it retries with backoff and records the outcome.

E-mail goes by the backend ``EMAIL_BACKEND`` chooses (docs/email.md):

- ``sink`` (development default): one ``.eml`` file per message under ``MAIL_SINK_DIR``
  (``var/mail``), readable with any mail client or ``read_sink()``;
- ``smtp``: the server of ``SMTP_URL``; with ``starttls=1`` nothing is sent, not even the
  password, unless the server takes STARTTLS and shows a certificate that checks (against
  ``SMTP_CA_FILE`` when set, else the system's trusted authorities);
- ``notify``: GOV.UK Notify, through one e-mail template whose subject is ``((subject))`` and
  whose body is ``((body))``.

An e-mail failure is ``permanent`` when the other end refused this message for good (an SMTP 5xx
reply, a Notify 4xx other than 429), so the next contact is tried at once; else it is retryable
(down, timed out, STARTTLS not offered, certificate not trusted, SMTP 4xx, Notify 429 or 5xx).
Error messages say what happened, never a password or an API key.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import requests
from notifications_python_client.errors import HTTPError, InvalidResponse
from notifications_python_client.notifications import NotificationsAPIClient
from standardwebhooks import Webhook

from shared import netguard, webhook_secrets
from shared.db import utcnow
from shared.monitoring import NOTIFICATION_FAILURES
from shared.settings import Settings, SmtpServer

USER_AGENT = "nclcc-outcome-feedback/1"


class NotificationError(Exception):
    """The notification was not accepted; ``permanent`` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def webhook_headers(secret: str, message_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
    """The Standard Webhooks headers for ``body``: ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``)."""
    timestamp = (now or datetime.now(UTC)).replace(microsecond=0)
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, timestamp, body.decode()),
    }


def send_webhook(settings: Settings, url: str, payload: dict, *, sealed_secret: str | None, message_id: str) -> int:
    """POST ``payload`` as JSON, signed by the Standard Webhooks scheme with the organisation's
    own secret; the one sender of webhooks for every service.

    ``message_id`` stays the same for every try of one message, so the receiver can drop
    repeats. The URL is checked again here (DNS may have changed since it was set) and the
    request goes to the address that was checked. Errors say what happened in words an admin
    may see, never what the other end answered beyond its status code.
    """
    try:
        secret = webhook_secrets.unseal(settings, sealed_secret)
    except webhook_secrets.SecretUnavailable as error:
        # Never send unsigned: the organisation's other contact is used instead.
        raise NotificationError("webhook has no signing secret", permanent=True) from error
    try:
        target = netguard.check_url(url, settings.webhook_allow_private)
    except netguard.AddressNotAllowed as error:
        raise NotificationError("webhook address not allowed", permanent=True) from error
    except netguard.NotResolved as error:
        raise NotificationError("webhook unreachable") from error
    body = json.dumps(payload, default=str).encode()
    headers = webhook_headers(secret, message_id, body)
    headers["User-Agent"] = USER_AGENT
    http = netguard.pinned_session(target)
    try:
        response = http.post(url, data=body, headers=headers, timeout=10, allow_redirects=False)
    except requests.RequestException as error:
        raise NotificationError("webhook unreachable") from error
    finally:
        http.close()
    if not 200 <= response.status_code < 300:
        # 4xx other than timeouts and rate limits will not get better by retrying.
        permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 425, 429)
        raise NotificationError(f"webhook answered HTTP {response.status_code}", permanent=permanent)
    return response.status_code


@dataclass(frozen=True)
class Contact:
    channel: str  # "webhook" or "email"
    address: str


@dataclass(frozen=True)
class Notification:
    """One message, as an e-mail (subject, text) and as a webhook (payload, message_id: the same
    on every try, so the receiver can drop repeats). References and links, never intelligence."""

    subject: str
    text: str
    payload: dict
    message_id: str
    html: str = ""  # the e-mail's HTML part, the same words as ``text`` (shared.wording)


@dataclass
class Sending:
    """What ``send_with_fallback`` did: the contact that took the message (None if none did)
    and every failure on the way, in order."""

    sent_to: Contact | None = None
    failures: list[tuple[Contact, NotificationError]] = field(default_factory=list)

    @property
    def fallback(self) -> bool:
        return self.sent_to is not None and bool(self.failures)

    @property
    def worth_retrying(self) -> bool:
        """Whether another try could do better: some contact failed for a reason that may pass
        (every one refused for good, or none to try: retrying sends the same refusals)."""
        return any(not failure.permanent for _, failure in self.failures)


def send_with_fallback(
    settings: Settings,
    contacts: Sequence[Contact],
    notification: Notification,
    *,
    sealed_secret: str | None,
    final_try: bool,
) -> Sending:
    """Send to the first contact; when it fails for good (or on the job's last try) fall back
    to the next, and so on. A first contact that fails for a reason that may pass is left to
    the job's next try rather than skipped. ``sealed_secret`` signs webhooks."""
    sending = Sending()
    for index, contact in enumerate(contacts):
        try:
            if contact.channel == "webhook":
                send_webhook(
                    settings,
                    contact.address,
                    notification.payload,
                    sealed_secret=sealed_secret,
                    message_id=notification.message_id,
                )
            else:
                send_email(
                    settings,
                    contact.address,
                    notification.subject,
                    notification.text,
                    notification.html,
                    message_id=notification.message_id,
                )
        except NotificationError as error:
            sending.failures.append((contact, error))
            NOTIFICATION_FAILURES.labels(settings.service, contact.channel).inc()
            if index == 0 and not (error.permanent or final_try):
                break  # retry the first contact before falling back
            continue
        sending.sent_to = contact
        break
    return sending


# Enough of the other end's answer to act on, without copying a whole page into a record.
MAX_REPLY_CHARS = 200


def send_email(
    settings: Settings, to: str, subject: str, body: str, html: str = "", *, message_id: str | None = None
) -> str:
    """Send one e-mail by the configured backend; the message's id (Notify's, or our
    ``Message-ID``). ``html``, when given, is sent beside the plain text (Notify's template
    formats the plain text itself). ``message_id`` (a notification's, the same on every try)
    makes the ``Message-ID``, so a mail system can drop a repeat."""
    if settings.email_backend == "notify":
        return _send_by_notify(settings, to, subject, body)
    message = build_email(settings, to, subject, body, html, message_id=message_id)
    if settings.email_backend == "sink":
        return _write_to_sink(settings.mail_sink_dir, message)
    assert settings.smtp is not None  # the settings refuse EMAIL_BACKEND=smtp without SMTP_URL
    _send_by_smtp(settings, settings.smtp, message)
    return message["Message-ID"]


def build_email(
    settings: Settings, to: str, subject: str, body: str, html: str = "", *, message_id: str | None = None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = utcnow().strftime("%a, %d %b %Y %H:%M:%S +0000")
    message["Message-ID"] = f"<{message_id or uuid.uuid4()}@{settings.mail_from.split('@')[-1]}>"
    message.set_content(body)
    if html:
        message.add_alternative(html, subtype="html")
    return message


# --- SMTP ----------------------------------------------------------------------------------


def _send_by_smtp(settings: Settings, server: SmtpServer, message: EmailMessage) -> None:
    timeout = settings.email_timeout_seconds
    # Certificates and host names are checked: smtplib's own default for STARTTLS checks neither.
    context = ssl.create_default_context(cafile=settings.smtp_ca_file)
    client: smtplib.SMTP | None = None
    try:
        if server.implicit_tls:
            client = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(server.host, server.port, timeout=timeout)
        if server.starttls:
            client.ehlo()
            if not client.has_extn("starttls"):
                # Retryable: a server misconfigured for a while, or someone on the path removing
                # STARTTLS from its answer, may both pass; the job's last try falls back to the
                # next contact. Never sent in clear meanwhile.
                raise NotificationError("e-mail not sent: the SMTP server does not offer STARTTLS, as SMTP_URL asks")
            client.starttls(context=context)
        if server.username:
            client.login(server.username, server.password or "")
        client.send_message(message)
        _say_goodbye(client)
    except smtplib.SMTPRecipientsRefused as error:
        code, reply = next(iter(error.recipients.values()), (0, b""))
        raise _smtp_refusal(f"e-mail refused for {message['To']}", code, reply) from error
    except smtplib.SMTPResponseException as error:
        raise _smtp_refusal("e-mail not sent", error.smtp_code, error.smtp_error) from error
    except smtplib.SMTPNotSupportedError as error:
        # AUTH not offered: the URL's credentials cannot be used here.
        raise NotificationError(f"e-mail not sent: {error}") from error
    except ssl.SSLCertVerificationError as error:
        raise NotificationError(
            f"e-mail not sent: the SMTP server's TLS certificate is not trusted ({error.verify_message});"
            " see SMTP_CA_FILE"
        ) from error
    except (TimeoutError, smtplib.SMTPServerDisconnected) as error:
        # smtplib reports a reply that never came (a timeout) as the server hanging up.
        timed_out = isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError)
        reason = f"did not answer within {timeout} s" if timed_out else "closed the connection"
        raise NotificationError(f"e-mail not sent: the SMTP server {reason}") from error
    except ConnectionRefusedError as error:
        raise NotificationError("e-mail not sent: the SMTP server refused the connection (down?)") from error
    except (smtplib.SMTPException, OSError) as error:
        raise NotificationError(f"e-mail not sent: {type(error).__name__}: {error}") from error
    finally:
        if client is not None:
            client.close()  # after a failure, without waiting on the server for a QUIT


def _say_goodbye(client: smtplib.SMTP) -> None:
    """QUIT once the server took the message: whatever it answers, the message is sent, and
    reporting a failure here would have it sent twice."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        pass


def _smtp_refusal(what: str, code: int, reply: bytes | str) -> NotificationError:
    """A 5xx reply is the server's final word on this message; anything else may pass."""
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return NotificationError(f"{what}: SMTP {code} {text[:MAX_REPLY_CHARS]}", permanent=500 <= code < 600)


def _write_to_sink(directory: Path, message: EmailMessage) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{utcnow().strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.eml"
    (directory / name).write_bytes(message.as_bytes())
    return message["Message-ID"]


def read_sink(directory: Path) -> list[EmailMessage]:
    """Every message in the development sink, oldest first."""
    if not directory.exists():
        return []
    parser = BytesParser(policy=policy.default)
    return [parser.parsebytes(path.read_bytes()) for path in sorted(directory.glob("*.eml"))]


def plain_text(message: EmailMessage) -> str:
    """The plain-text part of an e-mail (the whole body when it has only one)."""
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


def html_part(message: EmailMessage) -> str:
    """The HTML part of an e-mail, '' when it has none."""
    part = message.get_body(preferencelist=("html",))
    return part.get_content() if part is not None else ""


# --- GOV.UK Notify -------------------------------------------------------------------------


def _send_by_notify(settings: Settings, to: str, subject: str, body: str) -> str:
    """One e-mail through the Notify template; ``MAIL_FROM`` does not apply (Notify sends from
    the service's own address and reply-to set in Notify)."""
    client = NotificationsAPIClient(settings.notify_api_key, timeout=settings.email_timeout_seconds)
    try:
        answer = client.send_email_notification(
            email_address=to,
            template_id=settings.notify_email_template_id,
            personalisation={"subject": subject, "body": body},
        )
    except InvalidResponse:
        # A 2xx whose body would not parse: Notify took the message, and a retry would send it twice.
        return ""
    except HTTPError as error:
        raise _notify_refusal(error) from error
    finally:
        client.request_session.close()
    return str(answer.get("id", ""))


def _notify_refusal(error: HTTPError) -> NotificationError:
    if error.response is None:
        return NotificationError("e-mail not sent: GOV.UK Notify unreachable")
    status = error.status_code
    # Notify answers {"errors": [{"error": "BadRequestError", "message": "..."}], ...}.
    details = error.message
    if isinstance(details, list):
        details = "; ".join(f"{item.get('error', '')}: {item.get('message', '')}" for item in details)
    retryable = status == 429 or status >= 500
    return NotificationError(
        f"e-mail not sent: GOV.UK Notify answered HTTP {status} {str(details)[:MAX_REPLY_CHARS]}",
        permanent=not retryable,
    )
