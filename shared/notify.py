"""Notification senders: a webhook signed by the Standard Webhooks scheme, and e-mail, and
``send_with_fallback``, which tries an organisation's contacts in turn.

Each send makes one attempt and raises ``NotificationError`` on failure; the RQ job that calls
it retries with backoff and records the outcome. Without ``SMTP_URL`` e-mail goes to a
development sink: one ``.eml`` file per message under ``MAIL_SINK_DIR`` (``var/mail``), readable
with any mail client or ``read_sink()``.
"""

from __future__ import annotations

import json
import smtplib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import requests
from standardwebhooks import Webhook

from shared import netguard, webhook_secrets
from shared.db import utcnow
from shared.monitoring import NOTIFICATION_FAILURES
from shared.settings import Settings

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


@dataclass
class Sending:
    """What ``send_with_fallback`` did: the contact that took the message (None if none did)
    and every failure on the way, in order."""

    sent_to: Contact | None = None
    failures: list[tuple[Contact, NotificationError]] = field(default_factory=list)

    @property
    def fallback(self) -> bool:
        return self.sent_to is not None and bool(self.failures)


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
                send_email(settings, contact.address, notification.subject, notification.text)
        except NotificationError as error:
            sending.failures.append((contact, error))
            NOTIFICATION_FAILURES.labels(settings.service, contact.channel).inc()
            if index == 0 and not (error.permanent or final_try):
                break  # retry the first contact before falling back
            continue
        sending.sent_to = contact
        break
    return sending


def build_email(settings: Settings, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = utcnow().strftime("%a, %d %b %Y %H:%M:%S +0000")
    message["Message-ID"] = f"<{uuid.uuid4()}@{settings.mail_from.split('@')[-1]}>"
    message.set_content(body)
    return message


def send_email(settings: Settings, to: str, subject: str, body: str) -> str:
    """Send by SMTP when ``SMTP_URL`` is set, else keep the message in the development sink."""
    message = build_email(settings, to, subject, body)
    if not settings.smtp_url:
        return _write_to_sink(settings.mail_sink_dir, message)
    url = urlparse(settings.smtp_url)
    options = {k: v[-1] for k, v in parse_qs(url.query).items()}
    use_ssl = url.scheme == "smtps"
    port = url.port or (465 if use_ssl else 587 if options.get("starttls") == "1" else 25)
    try:
        client_class = smtplib.SMTP_SSL if use_ssl else smtplib.SMTP
        with client_class(url.hostname or "", port, timeout=15) as client:
            if options.get("starttls") == "1":
                client.starttls()
            if url.username:
                client.login(unquote(url.username), unquote(url.password or ""))
            client.send_message(message)
    except smtplib.SMTPRecipientsRefused as error:
        raise NotificationError(f"e-mail refused for {to}", permanent=True) from error
    except (smtplib.SMTPException, OSError) as error:
        raise NotificationError(f"e-mail not sent: {type(error).__name__}: {error}") from error
    return message["Message-ID"]


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
