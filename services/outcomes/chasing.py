"""The chaser: a ladder of steps relative to each return's due date, applied by a periodic
sweep. The database is the source of truth: a step is claimed by inserting its chase-log row
(unique per return and step) under a row lock that other sweeps skip (a return held by another
sweep is claimed by that one; one held by a filing waits a sweep, a delay of no account on a
ladder of days), and only then sent by an RQ job, which waits for the step's row. A flushed
Redis loses no step (the sweep re-enqueues pending ones) and a step is never claimed twice. A
final return or a withdrawal stops the ladder; extending the due date moves the steps not yet
sent, because each sweep plans from the current due date.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import cast

from prometheus_client import Counter
from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from services.outcomes.models import ChaseEntry, ChasePolicy, ExpectedReturn, Organisation, shared_models
from shared import clock
from shared.calendar import add_working_days
from shared.db import after_commit, commit_after_sending, utcnow
from shared.errors import Conflict, Invalid
from shared.form_links import form_url
from shared.local_time import date_time_words, date_words
from shared.notify import Contact, Notification, NotificationError, Sending, send_with_fallback
from shared.outbox import emit, emit_many
from shared.queue import enqueue, enqueue_new, is_final_try, retry
from shared.settings import Settings
from shared.wording import EmailBody

DAY = 86400
DEFAULT_STEPS = [
    {"name": "reminder", "offset_seconds": -3 * DAY, "notify": "recipient"},
    {"name": "due_today", "offset_seconds": 0, "notify": "recipient"},
    {"name": "overdue", "offset_seconds": 2 * DAY, "notify": "recipient"},
    {"name": "escalation", "offset_seconds": 7 * DAY, "notify": "escalation"},
    {"name": "centre_escalation", "offset_seconds": 14 * DAY, "notify": "centre"},
]
SWEEP_BATCH = 500
CHASE_STEPS = Counter(
    "ofs_chase_steps",
    "Chase steps tried: sent, sent_fallback (by a later contact), failed (no try left) or retrying.",
    ["result"],
)


# --- the policy ----------------------------------------------------------------------------


def current_policy(session: Session) -> ChasePolicy:
    return session.get(ChasePolicy, 1) or ChasePolicy(id=1, steps=DEFAULT_STEPS, updated_by=None, updated_at=utcnow())


def set_policy(session: Session, steps: list[dict], actor: str) -> ChasePolicy:
    policy = session.get(ChasePolicy, 1) or ChasePolicy(id=1)
    policy.steps = sorted((dict(step) for step in steps), key=lambda step: step["offset_seconds"])
    policy.updated_by = actor
    policy.updated_at = utcnow()
    session.add(policy)
    # New or moved steps may now apply to returns whose ladder was finished.
    session.execute(
        update(ExpectedReturn)
        .where(ExpectedReturn.ladder_done_at.is_not(None), ExpectedReturn.final_returned_at.is_(None))
        .values(ladder_done_at=None)
    )
    return policy


# --- the sweep -----------------------------------------------------------------------------


def steps_due(
    expected: ExpectedReturn, steps: list[dict], logged: set[str], now: datetime
) -> list[tuple[dict, str | None]]:
    """(step, why it is skipped, or None to send it) for each step whose time has come and
    that is not in the chase log yet.

    A step planned before the package was issued is skipped. When several steps for the same
    audience fall due at once (the sweep was down, or the due date was short), only the latest
    is sent: a reminder after the overdue notice helps nobody.
    """
    due = []
    for step in sorted(steps, key=lambda s: s["offset_seconds"]):
        planned = expected.due_at + timedelta(seconds=step["offset_seconds"])
        if step["name"] not in logged and planned <= now:
            due.append((step, "planned before the package was issued" if planned < expected.issued_at else None))
    latest_by_audience = {step["notify"]: step["name"] for step, skip in due if skip is None}
    return [
        (step, skip or (None if latest_by_audience[step["notify"]] == step["name"] else "superseded by a later step"))
        for step, skip in due
    ]


def sweep(session: Session, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Claim every chase step that has fallen due, emit overdue events, and enqueue the sends.
    Safe to run twice at once: returns locked by one sweep are skipped by the other."""
    now = now or clock.now()
    steps = current_policy(session).steps
    earliest = min((s["offset_seconds"] for s in steps), default=0)
    candidates = session.scalars(
        select(ExpectedReturn)
        .where(
            ExpectedReturn.closed_at.is_(None),
            ExpectedReturn.final_returned_at.is_(None),
            ExpectedReturn.ladder_done_at.is_(None),
            ExpectedReturn.due_at <= now - timedelta(seconds=min(earliest, 0)),
        )
        .order_by(ExpectedReturn.due_at)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True, of=ExpectedReturn)
    ).all()
    counts = {"claimed": 0, "skipped": 0, "overdue": 0}
    # The batch's chase log in one read, and its new steps in one insert: a sweep costs a few
    # statements however many returns fall due, not a few per return.
    logged_by_return: dict[uuid.UUID, set[str]] = {expected.id: set() for expected in candidates}
    ids = list(logged_by_return)
    for start in range(0, len(ids), 900):
        for return_id, step_name in session.execute(
            select(ChaseEntry.return_id, ChaseEntry.step).where(ChaseEntry.return_id.in_(ids[start : start + 900]))
        ):
            logged_by_return[return_id].add(step_name)
    rows = [
        {
            "return_id": expected.id,
            "step": step["name"],
            "notify": step["notify"],
            "planned_at": expected.due_at + timedelta(seconds=step["offset_seconds"]),
            "result": "skipped" if skip else "pending",
            "error": skip,
        }
        for expected in candidates
        for step, skip in steps_due(expected, steps, logged_by_return[expected.id], now)
    ]
    claimed: list[int] = []
    if rows:
        # Another sweep may have claimed a step since (the unique constraint): it is left out.
        for entry_id, return_id, step_name, result in session.execute(claim_statement(session), rows):
            logged_by_return[return_id].add(step_name)
            counts["skipped" if result == "skipped" else "claimed"] += 1
            if result == "pending":
                claimed.append(entry_id)
    # Each in one statement for the batch, not an UPDATE per return: both take the same ``now``.
    ladder_done = [
        expected.id
        for expected in candidates
        if now > expected.due_at and {step["name"] for step in steps} <= logged_by_return[expected.id]
    ]
    overdue = [expected for expected in candidates if now > expected.due_at and expected.overdue_emitted_at is None]
    for column, ids in (("ladder_done_at", ladder_done), ("overdue_emitted_at", [e.id for e in overdue])):
        if ids:  # nothing left to send (later sweeps pass it by); its overdue event emitted
            session.execute(update(ExpectedReturn).where(ExpectedReturn.id.in_(ids)).values({column: now}))
    emit_many(
        session,
        shared_models,
        settings,
        "return.overdue",
        [
            (
                expected.id,
                {
                    "return_id": str(expected.id),
                    "package_id": str(expected.package_id),
                    "reference": expected.reference,
                    "organisation": expected.organisation,
                    "due_at": expected.due_at.isoformat(),
                    "overdue_at": now.isoformat(),
                },
            )
            for expected in overdue
        ],
    )
    counts["overdue"] = len(overdue)
    session.flush()
    after_commit(session, lambda: enqueue_sends(settings, claimed))
    session.commit()
    return counts


def claim_statement(session: Session):
    """Insert chase steps, each unless already in the log, answering the ones it inserted."""
    table = cast(Table, ChaseEntry.__table__)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return (
        insert(table)
        .on_conflict_do_nothing(index_elements=[table.c.return_id, table.c.step])
        .returning(table.c.id, table.c.return_id, table.c.step, table.c.result)
    )


def requeue_lost_sends(session: Session, settings: Settings, older_than_seconds: int = 30) -> int:
    """Pending chase steps whose job is not in Redis any more (Redis flushed or down)."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    ids = session.scalars(
        select(ChaseEntry.id).where(ChaseEntry.result == "pending", ChaseEntry.claimed_at < cutoff).limit(1000)
    ).all()
    for entry_id in ids:
        enqueue_send(settings, entry_id)
    return len(ids)


def enqueue_sends(settings: Settings, entry_ids: list[int]) -> None:
    """The sends of steps just claimed, in one round trip (new rows: no job has their ids yet)."""
    enqueue_new(
        settings.redis_url,
        "outcomes",
        "services.outcomes.jobs.send_chase",
        [((entry_id,), f"chase-{entry_id}") for entry_id in entry_ids],
        retry=retry(settings.chase_retry_intervals),
    )


def enqueue_send(settings: Settings, entry_id: int) -> None:
    enqueue(
        settings.redis_url,
        "outcomes",
        "services.outcomes.jobs.send_chase",
        entry_id,
        job_id=f"chase-{entry_id}",
        retry=retry(settings.chase_retry_intervals),
    )


# --- sending one step ----------------------------------------------------------------------


def contacts_for(settings: Settings, organisation: Organisation | None, notify: str) -> list[Contact]:
    """The contacts to try in order: the step's contact, then the organisation's other one."""
    if notify == "centre":
        return [Contact("email", settings.centre_email)]
    if organisation is None:
        return []
    if notify == "escalation":
        options = [("email", organisation.escalation_email), ("email", organisation.email)]
    elif organisation.webhook_url:
        options = [("webhook", organisation.webhook_url), ("email", organisation.email)]
    else:
        options = [("email", organisation.email), ("webhook", organisation.webhook_url)]
    return [Contact(channel, address) for channel, address in options if address]


def chase_message(
    settings: Settings, expected: ExpectedReturn, entry: ChaseEntry, organisation_name: str, centre_name: str
) -> Notification:
    """One chase step's message, written for whom it goes to: the recipient gets the signed form
    link; its escalation contact is told about the organisation (and sent to its pages, where they
    sign in); the centre is sent to its own view of the return, never to the force's form."""
    form_link = form_url(settings, expected.id)
    pages = settings.public_urls["dissemination"]
    package_page = f"{pages}/disseminations/{expected.id}"
    centre_page = f"{pages}/packages/{expected.package_id}#return-{expected.id}"
    due = date_time_words(expected.due_at, zone=True)
    # As of when the step was meant to go (a step after the due date is about a late return even
    # if a slow sweep sends it early by the clock of another host).
    now = max(clock.now(), entry.planned_at)
    overdue = now > expected.due_at
    days_late = (now - expected.due_at).days if overdue else 0
    lateness = (
        f"overdue: it was due on {due}" + (f", {days_late} day{'s' if days_late != 1 else ''} ago" if days_late else "")
        if overdue
        else f"due on {due}"
    )
    reference = expected.reference
    body = EmailBody()
    if entry.notify == "recipient":
        subject = (
            f"{'OVERDUE: ' if overdue else ''}Outcome return for {reference} "
            f"{'was' if overdue else 'is'} due {date_words(expected.due_at)}"
        )
        body.paragraph(f"{organisation_name}: your outcome return for intelligence package {reference} is {lateness}.")
        body.paragraph(
            "Tell the centre what was done with the intelligence, even if nothing was: it uses every "
            "return to judge and improve what it sends."
        )
        body.link("File the outcome return (no account needed)", form_link)
        body.link("Or sign in to see the package", package_page)
    elif entry.notify == "escalation":
        subject = f"{'OVERDUE: ' if overdue else ''}{organisation_name} outcome return for {reference}"
        body.paragraph(f"{organisation_name} has an outcome return for intelligence package {reference} {lateness}.")
        body.paragraph(
            f"You are receiving this as {organisation_name}'s escalation contact. Please make sure "
            f"the return is filed: the {centre_name} has already reminded the team it was sent to."
        )
        body.link("Sign in to see the package and file the return", package_page)
    else:
        subject = f"{'OVERDUE: ' if overdue else ''}{organisation_name} outcome return for {reference}"
        body.paragraph(f"{organisation_name}'s outcome return for intelligence package {reference} is {lateness}.")
        body.paragraph(f"It has been chased by the ladder's earlier steps. This step: {entry.step}.")
        body.link("See the return on the package", centre_page)
    body.facts({"Reference": reference, "Organisation": organisation_name, "Due": due, "Chase step": entry.step})
    payload = {
        "event": "outcome_return.chase",
        "step": entry.step,
        "notify": entry.notify,
        "return_id": str(expected.id),
        "reference": reference,
        "organisation": expected.organisation,
        "due_at": expected.due_at.isoformat(),
        "overdue": overdue,
        "form_url": form_link,
        "package_page": package_page,
    }
    return Notification(subject, body.text(), payload, message_id=f"chase_{expected.id}_{entry.step}", html=body.html())


def centre_name(session: Session, settings: Settings) -> str:
    centre = session.get(Organisation, settings.centre_org)
    return centre.name if centre else settings.centre_org


def send_chase(session: Session, settings: Settings, entry_id: int) -> str:
    # Wait for the row rather than skip it: a transaction holding it (a filing that cancels the
    # step, a second copy of this job, or one that gives up) must not leave the step pending with
    # no job until the next requeue. Whoever comes second sees what the first did.
    entry = session.scalars(select(ChaseEntry).where(ChaseEntry.id == entry_id).with_for_update()).first()
    if entry is None or entry.result != "pending":
        return "nothing to do"
    expected = session.get(ExpectedReturn, entry.return_id)
    assert expected is not None  # chase_log.return_id references expected_returns
    if expected.final_returned_at or expected.closed_at:
        entry.result = "cancelled"
        entry.error = "final return filed" if expected.final_returned_at else "return closed"
        session.commit()
        return "cancelled"
    organisation = session.get(Organisation, expected.organisation)
    contacts = contacts_for(settings, organisation, entry.notify)
    final_try = is_final_try()
    entry.attempts += 1
    sending = send_with_fallback(
        settings,
        contacts,
        chase_message(
            settings,
            expected,
            entry,
            organisation.name if organisation else expected.organisation,
            centre_name(session, settings),
        ),
        sealed_secret=organisation.webhook_secret_sealed if organisation else None,
        final_try=final_try,
    )
    errors = [f"{contact.channel} {contact.address}: {failure}" for contact, failure in sending.failures]
    if sending.sent_to is not None:
        commit_after_sending(
            session,
            lambda job_session: _record_sent(job_session, settings, expected, entry, sending, errors),
            _record_sent_again(settings, entry_id, sending, errors),
        )
        result = sent_result(sending)
        CHASE_STEPS.labels(result).inc()
        return result
    if not contacts:
        errors.append("no contact for this step in the directory")
    entry.error = "; ".join(errors)
    if final_try or not sending.worth_retrying:
        entry.result = "failed"
    session.commit()
    if entry.result == "failed":
        CHASE_STEPS.labels("failed").inc()
        return "failed"
    CHASE_STEPS.labels("retrying").inc()
    raise NotificationError(entry.error)


def sent_result(sending: Sending) -> str:
    """A sent step's result: by its first contact, or by a fallback."""
    return "sent_fallback" if sending.fallback else "sent"


def _record_sent(
    session: Session, settings: Settings, expected: ExpectedReturn, entry: ChaseEntry, sending: Sending, errors: list
) -> None:
    assert sending.sent_to is not None
    entry.result = sent_result(sending)
    entry.sent_at = utcnow()
    entry.channel = sending.sent_to.channel
    entry.address = sending.sent_to.address
    entry.error = "; ".join(errors) or None
    emit(
        session,
        shared_models,
        settings,
        "chase.sent",
        expected.id,
        {
            "return_id": str(expected.id),
            "package_id": str(expected.package_id),
            "organisation": expected.organisation,
            "step": entry.step,
            "notify": entry.notify,
            "channel": entry.channel,
            "sent_at": entry.sent_at.isoformat(),
        },
    )


def _record_sent_again(settings: Settings, entry_id: int, sending: Sending, errors: list):
    """``_record_sent`` in a fresh session, for ``commit_after_sending``."""

    def record(session: Session) -> None:
        entry = session.scalars(select(ChaseEntry).where(ChaseEntry.id == entry_id).with_for_update()).first()
        if entry is None or entry.result != "pending":
            return
        expected = session.get(ExpectedReturn, entry.return_id)
        assert expected is not None
        entry.attempts += 1
        _record_sent(session, settings, expected, entry, sending, errors)

    return record


def extend_return(session: Session, settings: Settings, expected: ExpectedReturn, values: dict, actor: str) -> None:
    """Move an open return's due date to ``values["due_at"]`` or ``values["working_days"]`` working
    days on (in the organisation's part of the UK); the chase re-plans."""
    if expected.final_returned_at or expected.closed_at:
        raise Conflict("This return is complete or closed; its due date cannot move.")
    if "working_days" in values:
        organisation = session.get(Organisation, expected.organisation)
        region = organisation.region if organisation else None
        new_due = add_working_days(expected.due_at, values["working_days"], region)
    else:
        new_due = values["due_at"]
        if new_due <= expected.due_at:
            raise Invalid({"due_at": "An extension must be later than the current due date."})
    extend_due_date(session, settings, expected, new_due, values["reason"], actor)


def extend_due_date(
    session: Session, settings: Settings, expected: ExpectedReturn, new_due: datetime, reason: str, actor: str
) -> None:
    previous = expected.due_at
    expected.due_at = new_due
    expected.extensions = [
        *expected.extensions,
        {
            "from": previous.isoformat(),
            "to": new_due.isoformat(),
            "reason": reason,
            "by": actor,
            "at": utcnow().isoformat(),
        },
    ]
    expected.ladder_done_at = None
    if new_due > utcnow():
        expected.overdue_emitted_at = None
    emit(
        session,
        shared_models,
        settings,
        "return.extended",
        expected.id,
        {
            "return_id": str(expected.id),
            "package_id": str(expected.package_id),
            "organisation": expected.organisation,
            "previous_due_at": previous.isoformat(),
            "due_at": new_due.isoformat(),
            "reason": reason,
        },
    )
