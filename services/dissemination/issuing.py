"""Issuing and withdrawing packages, acknowledgement.

Issuing makes one dissemination per recipient and emits ``package.issued`` in the same
transaction; after commit a delivery job per dissemination notifies the recipient
(``delivery.py``). Withdrawing notifies them the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.dissemination import delivery
from services.dissemination.drafting import check_rules, due_date_problem, merged_values
from services.dissemination.models import Dissemination, Organisation, Package, shared_models
from services.dissemination.payloads import dissemination_event, package_event
from shared.auth import Principal
from shared.calendar import add_working_days
from shared.db import after_commit, new_id, utcnow
from shared.errors import Conflict, Invalid
from shared.outbox import emit
from shared.settings import Settings


class StateConflict(Conflict):
    """The package is not in a state that allows this (answered 409)."""


class RuleBroken(Invalid):
    """A rule on a field is broken (answered 422 naming the field)."""


def issue_package(session: Session, settings: Settings, package: Package, principal: Principal) -> Package:
    # The draft must still keep every package rule (the directory or clearance may have changed).
    check_rules(session, settings, principal, merged_values(package, {}))
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
        Dissemination(id=new_id(), organisation=code, due_at=due_by_recipient[code], created_at=now)
        for code in package.recipients
    ]
    session.flush()
    payload = package_event(package)
    payload["disseminations"] = [dissemination_event(d) for d in package.disseminations]
    emit(session, shared_models, settings, "package.issued", package.id, payload)
    for dissemination in package.disseminations:
        after_commit(session, delivery.enqueue_later(settings, "deliver", dissemination.id))
    return package


def due_dates(session: Session, settings: Settings, package: Package, now: datetime) -> dict[str, datetime]:
    """Each recipient's due date: the package's date, or N working days on by the bank
    holidays of the recipient's part of the UK, or the default number of days."""
    if package.outcome_due_working_days:
        regions = dict(
            session.execute(
                select(Organisation.code, Organisation.region).where(Organisation.code.in_(package.recipients))
            ).all()
        )
        return {
            code: add_working_days(now, package.outcome_due_working_days, regions.get(code))
            for code in package.recipients
        }
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
            after_commit(session, delivery.enqueue_later(settings, "withdrawal", dissemination.id))
    return package


def acknowledge(session: Session, settings: Settings, dissemination: Dissemination, principal: Principal) -> bool:
    """Record the recipient's acknowledgement; a second one changes nothing. Returns whether
    this call recorded it."""
    if dissemination.package.status == "withdrawn":
        raise StateConflict(f"Package {dissemination.package.reference} was withdrawn.")
    if dissemination.withdrawn_at is not None:
        raise StateConflict(
            f"Package {dissemination.package.reference} was withdrawn from {dissemination.organisation}."
        )
    if dissemination.acknowledged_at:
        return False
    record_acknowledgement(session, settings, dissemination, utcnow(), principal.sub)
    return True


def record_acknowledgement(
    session: Session, settings: Settings, dissemination: Dissemination, at: datetime, by: str
) -> None:
    """The acknowledgement itself, and its event: by the recipient (``acknowledge``) or by filing
    a return, which counts as one (``feedback.on_outcome_filed``)."""
    dissemination.acknowledged_at = at
    dissemination.acknowledged_by = by[:200]
    if dissemination.delivered_at is None:
        # Seen in the inbox: it has reached them whatever the notification did.
        dissemination.delivered_at = dissemination.acknowledged_at
        dissemination.delivery_status = "delivered"
        dissemination.delivery_channel = dissemination.delivery_channel or "inbox"
    session.flush()
    payload = dissemination_event(dissemination)
    payload.update(acknowledged_at=at.isoformat(), acknowledged_by=dissemination.acknowledged_by)
    emit(session, shared_models, settings, "dissemination.acknowledged", dissemination.id, payload)
