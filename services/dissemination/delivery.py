"""Delivering packages to recipients: the notification job for an issue or a withdrawal.

After issuing (or withdrawing) commits, one job per dissemination notifies the recipient: its
webhook when the organisation has one, else e-mail, falling back to e-mail when the webhook
fails for good or on the last try (``shared.notify.send_with_fallback``), retried with backoff
(``NOTIFY_RETRY_INTERVALS``), and records the result. A sweep finds notifications whose job
was lost with Redis.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.dissemination.directory import ensure_webhook_secret
from services.dissemination.models import Dissemination, Organisation, Package, shared_models
from services.dissemination.payloads import dissemination_event
from shared.db import commit_after_sending, utcnow
from shared.local_time import date_time_words
from shared.notify import Contact, Notification, NotificationError, send_with_fallback
from shared.outbox import emit
from shared.queue import enqueue, is_final_try, retry
from shared.settings import Settings
from shared.wording import EmailBody


def enqueue_later(settings: Settings, kind: str, dissemination_id: uuid.UUID):
    """``enqueue_notification``, for ``after_commit``."""

    def enqueue_job() -> None:
        enqueue_notification(settings, kind, dissemination_id)

    return enqueue_job


def enqueue_notification(settings: Settings, kind: str, dissemination_id: uuid.UUID | str) -> None:
    enqueue(
        settings.redis_url,
        "dissemination",
        "services.dissemination.jobs.notify_recipient",
        kind,
        str(dissemination_id),
        job_id=f"notify-{kind}-{dissemination_id}",
        retry=retry(settings.notify_retry_intervals),
    )


def contacts(organisation: Organisation | None) -> list[Contact]:
    """Its webhook, then its e-mail, whichever it has (none when it left the directory)."""
    if organisation is None:
        return []
    return [
        Contact(channel, address)
        for channel, address in (("webhook", organisation.webhook_url), ("email", organisation.email))
        if address
    ]


def page_links(settings: Settings, dissemination: Dissemination) -> dict[str, str]:
    """Absolute addresses of the recipient's pages about ``dissemination``: what a person is
    sent (never the API)."""
    base = settings.public_urls["dissemination"]
    return {
        "package_page": f"{base}/disseminations/{dissemination.id}",
        "inbox_page": f"{base}/inbox",
        "sign_in_page": f"{base}/sign-in",
    }


def notification_for(
    settings: Settings, kind: str, dissemination: Dissemination, organisation_name: str, centre_name: str
) -> Notification:
    """The delivery or withdrawal notice: references and links only, never the intelligence.
    People are sent to the recipient's pages (they sign in there); a webhook gets the API too."""
    package = dissemination.package
    api = settings.public_urls["dissemination"]
    pages = {name: url for name, url in page_links(settings, dissemination).items() if name != "sign_in_page"}
    links = {
        "dissemination": f"{api}/api/v1/disseminations/{dissemination.id}",
        "package": f"{api}/api/v1/packages/{package.id}",
        "acknowledge": f"{api}/api/v1/disseminations/{dissemination.id}/acknowledge",
        "inbox": f"{api}/api/v1/inbox",
        **pages,
    }
    payload: dict[str, Any] = {
        "event": "package.issued" if kind == "deliver" else "package.withdrawn",
        "dissemination_id": str(dissemination.id),
        "package_id": str(package.id),
        "reference": package.reference,
        "organisation": dissemination.organisation,
        "classification": package.classification,
        "threat_area": package.threat_area,
        "due_at": dissemination.due_at.isoformat(),
        "links": links,
    }
    source = dissemination.onward_source
    if source is not None:
        payload.update(onward_from=str(source.id), passed_on_by=source.organisation)
    body = EmailBody()
    if kind == "deliver":
        subject = f"[{package.classification}] Intelligence package {package.reference} for {organisation_name}"
        body.paragraph(
            f"Intelligence package {package.reference} from the {centre_name} has been passed on to "
            f"{organisation_name} by {source.organisation}."
            if source is not None
            else f"The {centre_name} has sent intelligence package {package.reference} to {organisation_name}."
        )
        body.facts(
            {
                "Reference": package.reference,
                "Protective marking": package.classification,
                "Outcome return due": date_time_words(dissemination.due_at, zone=True),
            }
        )
        body.paragraph("Sign in to read the package and acknowledge that you have received it.")
        body.link("Read and acknowledge the package", pages["package_page"])
        body.paragraph(
            "The intelligence itself is never sent by e-mail. When you have acted on it, file an outcome "
            "return from the package page: tell the centre what was done, even if nothing was."
        )
    else:
        payload["reason"] = dissemination.withdrawal_reason or package.withdrawal_reason
        subject = f"[{package.classification}] Intelligence package {package.reference} WITHDRAWN"
        body.paragraph(f"Intelligence package {package.reference}, sent to {organisation_name}, has been withdrawn.")
        body.facts({"Reason": payload["reason"] or "None given"})
        body.paragraph("Do not act on it further. No outcome return is needed.")
        body.link("See the package", pages["package_page"])
    return Notification(subject, body.text(), payload, message_id=f"{kind}_{dissemination.id}", html=body.html())


def centre_name(session: Session, settings: Settings) -> str:
    centre = session.get(Organisation, settings.centre_org)
    return centre.name if centre else settings.centre_org


def notify_recipient(session: Session, settings: Settings, kind: str, dissemination_id: str) -> str:
    """Send one notification (delivery or withdrawal) and record what happened.

    Raises ``NotificationError`` to have RQ retry; on the last try, or when the webhook
    refuses for good, it falls back to e-mail and records the failure if that fails too. When
    every contact refused for good (or there is none) the failure is recorded at once.
    """
    # Wait for the row rather than skip it: another transaction holding it (a retry of this same
    # job, or anything else writing the dissemination) must not make this notice silently wait
    # for the next sweep. Whoever comes second sees what the first did and sends nothing twice.
    dissemination = session.scalars(
        select(Dissemination).where(Dissemination.id == uuid.UUID(dissemination_id)).with_for_update()
    ).first()
    if dissemination is None:
        return "nothing to do"
    if kind == "deliver" and (
        dissemination.delivered_at or dissemination.package.status == "withdrawn" or dissemination.withdrawn_at
    ):
        return "already delivered"
    if kind == "withdrawal" and dissemination.withdrawal_notified_at:
        return "already notified"
    # A webhook set before per-organisation secrets gets its secret now: never an unsigned one.
    organisation = ensure_webhook_secret(session, settings, dissemination.organisation)
    final_try = is_final_try()
    sending = send_with_fallback(
        settings,
        contacts(organisation),
        notification_for(
            settings,
            kind,
            dissemination,
            organisation.name if organisation else dissemination.organisation,
            centre_name(session, settings),
        ),
        sealed_secret=organisation.webhook_secret_sealed if organisation else None,
        final_try=final_try,
    )
    if kind == "deliver":
        dissemination.delivery_attempts += 1
    if sending.sent_to is not None:
        channel = sending.sent_to.channel
        commit_after_sending(
            session,
            lambda job_session: _record_success(job_session, settings, kind, dissemination, channel),
            _record_success_again(settings, kind, dissemination.id, channel),
        )
        return f"sent by {channel}"
    error = (
        "; ".join(f"{contact.channel}: {failure}" for contact, failure in sending.failures)
        or "no e-mail address in the directory"
    )
    gave_up = final_try or not sending.worth_retrying
    if kind == "deliver":
        dissemination.delivery_error = error
        if gave_up:
            dissemination.delivery_status = "failed"
            payload = dissemination_event(dissemination)
            payload.update(error=error, attempts=dissemination.delivery_attempts)
            emit(session, shared_models, settings, "dissemination.delivery_failed", dissemination.id, payload)
    session.commit()
    if not final_try and gave_up:
        return "failed for good"  # no retry: it would meet the same refusals
    raise NotificationError(error)


def _record_success_again(settings: Settings, kind: str, dissemination_id: uuid.UUID, channel: str):
    """``_record_success`` in a fresh session, for ``commit_after_sending``."""

    def record(session: Session) -> None:
        dissemination = session.scalars(
            select(Dissemination).where(Dissemination.id == dissemination_id).with_for_update()
        ).first()
        if dissemination is None or (
            dissemination.delivered_at if kind == "deliver" else dissemination.withdrawal_notified_at
        ):
            return
        if kind == "deliver":
            dissemination.delivery_attempts += 1
        _record_success(session, settings, kind, dissemination, channel)

    return record


def _record_success(session, settings, kind, dissemination, channel) -> None:
    now = utcnow()
    if kind == "withdrawal":
        dissemination.withdrawal_notified_at = now
        return
    dissemination.delivery_status = "delivered"
    dissemination.delivery_channel = channel
    dissemination.delivered_at = now
    dissemination.delivery_error = None
    payload = dissemination_event(dissemination)
    payload.update(delivered_at=now.isoformat(), channel=channel, attempts=dissemination.delivery_attempts)
    emit(session, shared_models, settings, "dissemination.delivered", dissemination.id, payload)


def undelivered_since(session: Session, seconds: int) -> list[tuple[str, uuid.UUID]]:
    """Notifications still owed whose job may have been lost with Redis."""
    cutoff = utcnow() - timedelta(seconds=seconds)
    deliver = session.scalars(
        select(Dissemination.id)
        .join(Package)
        .where(
            Dissemination.delivery_status == "pending",
            Package.status == "issued",
            Dissemination.withdrawn_at.is_(None),
            Dissemination.created_at < cutoff,
        )
        .limit(1000)
    ).all()
    withdraw = session.scalars(
        select(Dissemination.id)
        .join(Package)
        .where(
            Package.status == "withdrawn",
            Dissemination.withdrawal_notified_at.is_(None),
            Package.withdrawn_at < cutoff,
            Package.withdrawn_at > utcnow() - timedelta(days=7),
        )
        .limit(1000)
    ).all()
    withdraw_alone = session.scalars(
        select(Dissemination.id)
        .where(
            Dissemination.withdrawal_notified_at.is_(None),
            Dissemination.withdrawn_at < cutoff,
            Dissemination.withdrawn_at > utcnow() - timedelta(days=7),
        )
        .limit(1000)
    ).all()
    withdraw = list(dict.fromkeys([*withdraw, *withdraw_alone]))
    return [("deliver", i) for i in deliver] + [("withdrawal", i) for i in withdraw]
