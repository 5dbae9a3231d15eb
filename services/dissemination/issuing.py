"""Issuing and withdrawing packages, delivering them to recipients, acknowledgement.

Issuing makes one dissemination per recipient and emits ``package.issued`` in the same
transaction; after commit a delivery job per dissemination notifies the recipient (webhook
when the organisation has one, e-mail otherwise), retried with backoff, and records the
result. Notifications carry references and links, never the intelligence itself.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from rq import Retry, get_current_job
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.dissemination.directory import ensure_webhook_secret
from services.dissemination.drafting import due_date_problem
from services.dissemination.models import Dissemination, Organisation, Package, shared_models
from shared.auth import Principal
from shared.calendar import add_working_days
from shared.db import after_commit, utcnow
from shared.notify import NotificationError, send_email, send_webhook
from shared.outbox import emit
from shared.queue import enqueue
from shared.settings import Settings

log = logging.getLogger(__name__)

NOTIFY_RETRY_INTERVALS = [10, 30, 120, 600, 1800]


class StateConflict(Exception):
    """The package is not in a state that allows this (answered 409)."""


class RuleBroken(Exception):
    """A rule on a field is broken (answered 422 naming the field)."""

    def __init__(self, problems: dict[str, str]):
        super().__init__(problems)
        self.problems = problems


def notify_retry_intervals() -> list[int]:
    import os

    configured = os.environ.get("NOTIFY_RETRY_INTERVALS")
    return [int(part) for part in configured.split(",")] if configured else NOTIFY_RETRY_INTERVALS


def package_event(package: Package) -> dict:
    return {
        "package_id": str(package.id),
        "reference": package.reference,
        "title": package.title,
        "threat_area": package.threat_area,
        "classification": package.classification,
        "source_evaluation": package.source_evaluation,
        "intelligence_assessment": package.intelligence_assessment,
        "handling_code": package.handling_code,
        "issued_at": package.issued_at.isoformat() if package.issued_at else None,
        "issued_by": package.issued_by,
        "outcome_due_at": package.outcome_due_at.isoformat() if package.outcome_due_at else None,
    }


def dissemination_event(dissemination: Dissemination) -> dict:
    return {
        "dissemination_id": str(dissemination.id),
        "package_id": str(dissemination.package_id),
        "organisation": dissemination.organisation,
        "due_at": dissemination.due_at.isoformat(),
    }


def issue_package(session: Session, settings: Settings, package: Package, principal: Principal) -> Package:
    if package.status != "draft":
        raise StateConflict(f"Package {package.reference} is {package.status}; only a draft can be issued.")
    now = utcnow()
    problems: dict[str, str] = {}
    if not package.recipients:
        problems["recipients"] = "Add at least one recipient before issuing."
    due_by_recipient = due_dates(session, settings, package, now)
    due = max(due_by_recipient.values(), default=now + timedelta(days=settings.default_outcome_days))
    due_problem = due_date_problem(due, settings, now)
    if due_problem:
        problems["outcome_due_at"] = due_problem
    if problems:
        raise RuleBroken(problems)
    package.status = "issued"
    package.issued_at = now
    package.issued_by = principal.sub
    package.outcome_due_at = due
    package.disseminations = [
        Dissemination(id=uuid.uuid4(), organisation=code, due_at=due_by_recipient[code], created_at=now)
        for code in package.recipients
    ]
    session.flush()
    payload = package_event(package)
    payload["disseminations"] = [dissemination_event(d) for d in package.disseminations]
    emit(session, shared_models, settings, "package.issued", package.id, payload)
    for dissemination in package.disseminations:
        after_commit(session, _enqueue_later(settings, "deliver", dissemination.id))
    return package


def due_dates(session: Session, settings: Settings, package: Package, now) -> dict[str, object]:
    """Each recipient's due date: the package's date, or N working days on by the bank
    holidays of the recipient's part of the UK, or the default number of days."""
    if package.outcome_due_working_days:
        regions = dict(session.execute(
            select(Organisation.code, Organisation.region).where(Organisation.code.in_(package.recipients))
        ).all())
        return {code: add_working_days(now, package.outcome_due_working_days, regions.get(code))
                for code in package.recipients}
    due = package.outcome_due_at or now + timedelta(days=settings.default_outcome_days)
    return {code: due for code in package.recipients}


def withdraw_package(
    session: Session, settings: Settings, package: Package, principal: Principal, reason: str
) -> Package:
    if package.status not in ("draft", "issued"):
        raise StateConflict(f"Package {package.reference} is {package.status}; it cannot be withdrawn.")
    was_issued = package.status == "issued"
    package.status = "withdrawn"
    package.withdrawn_at = utcnow()
    package.withdrawn_by = principal.sub
    package.withdrawal_reason = reason
    session.flush()
    if was_issued:
        payload = package_event(package)
        payload.update(
            withdrawn_at=package.withdrawn_at.isoformat(),
            withdrawn_by=principal.sub,
            reason=reason,
            dissemination_ids=[str(d.id) for d in package.disseminations],
        )
        emit(session, shared_models, settings, "package.withdrawn", package.id, payload)
        for dissemination in package.disseminations:
            after_commit(session, _enqueue_later(settings, "withdrawal", dissemination.id))
    return package


def acknowledge(session: Session, settings: Settings, dissemination: Dissemination, principal: Principal) -> bool:
    """Record the recipient's acknowledgement; a second one changes nothing. Returns whether
    this call recorded it."""
    if dissemination.package.status == "withdrawn":
        raise StateConflict(f"Package {dissemination.package.reference} was withdrawn.")
    if dissemination.acknowledged_at:
        return False
    dissemination.acknowledged_at = utcnow()
    dissemination.acknowledged_by = principal.sub
    if dissemination.delivered_at is None:
        # Seen in the inbox: it has reached them whatever the notification did.
        dissemination.delivered_at = dissemination.acknowledged_at
        dissemination.delivery_status = "delivered"
        dissemination.delivery_channel = dissemination.delivery_channel or "inbox"
    session.flush()
    payload = dissemination_event(dissemination)
    payload.update(acknowledged_at=dissemination.acknowledged_at.isoformat(), acknowledged_by=principal.sub)
    emit(session, shared_models, settings, "dissemination.acknowledged", dissemination.id, payload)
    return True


# --- delivery (RQ jobs) ------------------------------------------------------------------

def _enqueue_later(settings: Settings, kind: str, dissemination_id: uuid.UUID):
    def enqueue_job() -> None:
        enqueue_notification(settings, kind, dissemination_id)

    return enqueue_job


def enqueue_notification(settings: Settings, kind: str, dissemination_id: uuid.UUID | str) -> None:
    intervals = notify_retry_intervals()
    enqueue(
        settings.redis_url,
        "dissemination",
        "services.dissemination.jobs.notify_recipient",
        kind,
        str(dissemination_id),
        job_id=f"notify-{kind}-{dissemination_id}",
        retry=Retry(max=len(intervals), interval=intervals),
    )


def notification_for(settings: Settings, kind: str, dissemination: Dissemination) -> tuple[str, str, dict]:
    """(subject, e-mail text, webhook payload): references and links only."""
    package = dissemination.package
    api = settings.public_urls["dissemination"]
    links = {
        "dissemination": f"{api}/api/v1/disseminations/{dissemination.id}",
        "package": f"{api}/api/v1/packages/{package.id}",
        "acknowledge": f"{api}/api/v1/disseminations/{dissemination.id}/acknowledge",
        "inbox": f"{api}/api/v1/inbox",
    }
    payload = {
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
    if kind == "deliver":
        subject = (
            f"[{package.classification}] Intelligence package {package.reference} for {dissemination.organisation}"
        )
        text = (
            f"The National County Lines Coordination Centre has issued intelligence package "
            f"{package.reference} to {dissemination.organisation}.\n\n"
            f"Classification: {package.classification}\n"
            f"Outcome return due: {dissemination.due_at:%d %B %Y %H:%M} UTC\n\n"
            f"Read it and acknowledge receipt in the dissemination service:\n{links['dissemination']}\n\n"
            f"The content is not sent by e-mail. You will be asked for a structured outcome return."
        )
    else:
        payload["reason"] = package.withdrawal_reason
        subject = f"[{package.classification}] Intelligence package {package.reference} WITHDRAWN"
        text = (
            f"Intelligence package {package.reference} sent to {dissemination.organisation} has been "
            f"withdrawn by the centre.\n\nReason: {package.withdrawal_reason}\n\n"
            f"Do not act on it further. No outcome return is needed.\n{links['dissemination']}"
        )
    return subject, text, payload


def notify_recipient(session: Session, settings: Settings, kind: str, dissemination_id: str) -> str:
    """Send one notification (delivery or withdrawal) and record what happened.

    Raises ``NotificationError`` to have RQ retry; on the last try, or when the webhook
    refuses for good, it falls back to e-mail and records the failure if that fails too.
    """
    dissemination = session.scalars(
        select(Dissemination)
        .where(Dissemination.id == uuid.UUID(dissemination_id))
        .with_for_update(skip_locked=True)
    ).first()
    if dissemination is None:
        return "nothing to do"
    if kind == "deliver" and (dissemination.delivered_at or dissemination.package.status == "withdrawn"):
        return "already delivered"
    if kind == "withdrawal" and dissemination.withdrawal_notified_at:
        return "already notified"
    # A webhook set before per-organisation secrets gets its secret now: never an unsigned one.
    organisation = ensure_webhook_secret(session, settings, dissemination.organisation)
    subject, text, payload = notification_for(settings, kind, dissemination)
    job = get_current_job()
    final_try = job is None or not job.retries_left
    channel, error = _send(settings, organisation, subject, text, payload, final_try,
                           message_id=f"{kind}_{dissemination.id}")
    if kind == "deliver":
        dissemination.delivery_attempts += 1
    if error is None:
        _record_success(session, settings, kind, dissemination, channel)
        session.commit()
        return f"sent by {channel}"
    if kind == "deliver":
        dissemination.delivery_error = error
        if final_try:
            dissemination.delivery_status = "failed"
            payload = dissemination_event(dissemination)
            payload.update(error=error, attempts=dissemination.delivery_attempts)
            emit(session, shared_models, settings, "dissemination.delivery_failed", dissemination.id, payload)
    session.commit()
    raise NotificationError(error)


def _send(settings, organisation, subject, text, payload, final_try, message_id) -> tuple[str, str | None]:
    """Try the webhook, then e-mail when the webhook is gone for good or on the last try."""
    errors = []
    if organisation.webhook_url:
        try:
            send_webhook(settings, organisation.webhook_url, payload,
                         sealed_secret=organisation.webhook_secret_sealed, message_id=message_id)
            return "webhook", None
        except NotificationError as error:
            errors.append(f"webhook: {error}")
            if not (error.permanent or final_try) or not organisation.email:
                return "webhook", "; ".join(errors)
    if organisation.email:
        try:
            send_email(settings, organisation.email, subject, text)
            return "email", None
        except NotificationError as error:
            errors.append(f"email: {error}")
    else:
        errors.append("no e-mail address in the directory")
    return "email", "; ".join(errors)


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
    return [("deliver", i) for i in deliver] + [("withdrawal", i) for i in withdraw]
