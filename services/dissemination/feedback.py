"""What the dissemination service learns back from the outcomes service, by event."""

from __future__ import annotations

import uuid
from datetime import datetime

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.dissemination import onward
from services.dissemination.issuing import record_acknowledgement
from services.dissemination.models import Dissemination
from shared.db import chunks


def on_outcome_filed(session: Session, event: dict) -> None:
    """Any filed return (interim or final) counts as acknowledgement and sets the return status
    the recipient's inbox shows; a final one marks the dissemination returned (the first counts)."""
    payload = event["payload"]
    dissemination = session.get(Dissemination, uuid.UUID(payload["return_id"]))
    if dissemination is None:
        return
    filed_at = datetime.fromisoformat(payload["filed_at"])
    record_return(session, dissemination, payload.get("status"), filed_at, payload.get("filed_by"))
    if payload.get("status") == "final" and dissemination.returned_at is None:
        dissemination.returned_at = filed_at


def record_return(
    session: Session, dissemination: Dissemination, status: str | None, filed_at: datetime, filed_by: str | None
) -> None:
    """Filing counts as acknowledgement (announced like any other, so the outcomes and metrics
    services count it too). Once final, a later interim amendment does not make the inbox show
    the return as interim again (events may also arrive out of order)."""
    if dissemination.acknowledged_at is None and dissemination.package.status != "withdrawn":
        settings = current_app.extensions["settings"]
        record_acknowledgement(session, settings, dissemination, filed_at, filed_by or "outcome return filed")
    if status in ("interim", "final") and dissemination.return_status != "final":
        dissemination.return_status = status


def after_outcome_filed(session: Session, event: dict) -> None:
    """A filed return: the dissemination's own state, then what its recipient passed on."""
    on_outcome_filed(session, event)
    onward.follow_pass_on(session, current_app.extensions["settings"], event)


def on_return_extended(session: Session, event: dict) -> None:
    """A deadline extended in the outcomes service is the one the recipient's pages show (the
    latest wins: extensions only move it later, whatever order their events arrive in)."""
    payload = event["payload"]
    dissemination = session.get(Dissemination, uuid.UUID(payload["return_id"]))
    if dissemination is None:
        return
    due = datetime.fromisoformat(payload["due_at"])
    if due > dissemination.due_at:
        dissemination.due_at = due


EVENT_HANDLERS = {"outcome.filed": after_outcome_filed, "return.extended": on_return_extended}


def apply_events(session: Session, events: list[dict]) -> None:
    """A batch of events from the outcomes service, each applied as if alone, after the
    disseminations they name are read and locked at once (in a fixed order: two batches never
    deadlock), with their packages, and the ones passed on are known: each event then finds its
    dissemination in the session instead of reading it, and its package, again, and looks for
    onward disseminations only where there are some (``onward.BatchKnowledge``)."""
    return_ids = sorted(
        {uuid.UUID(event["payload"]["return_id"]) for event in events if event["payload"].get("return_id")}
    )
    read: list[Dissemination] = []  # held here: the session keeps what it loaded only while in use
    batch = onward.BatchKnowledge()
    for chunk in chunks(return_ids):
        read.extend(
            session.scalars(
                select(Dissemination)
                .where(Dissemination.id.in_(chunk))
                .order_by(Dissemination.id)
                .with_for_update(of=Dissemination)
                # After a failed batch each event is applied alone, its rows read again: what the
                # failed attempt left in the session (and rolled back) must not be kept.
                .execution_options(populate_existing=True)
            )
        )
        batch.passed_on.update(
            session.scalars(select(Dissemination.onward_from).where(Dissemination.onward_from.in_(chunk)).distinct())
        )
    batch.locked.update(dissemination.id for dissemination in read)
    session.info[onward.BATCH_KEY] = batch
    try:
        for event in events:
            EVENT_HANDLERS[event["type"]](session, event)
    finally:
        session.info.pop(onward.BATCH_KEY, None)
