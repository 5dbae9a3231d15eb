"""What the dissemination service learns back from the outcomes service, by event."""

from __future__ import annotations

import uuid
from datetime import datetime

from flask import current_app
from sqlalchemy.orm import Session

from services.dissemination import onward
from services.dissemination.models import Dissemination


def on_outcome_filed(session: Session, event: dict) -> None:
    """A final outcome return marks the dissemination returned (the first one counts)."""
    payload = event["payload"]
    if payload.get("status") != "final":
        return
    dissemination = session.get(Dissemination, uuid.UUID(payload["return_id"]))
    if dissemination is None or dissemination.returned_at is not None:
        return
    dissemination.returned_at = datetime.fromisoformat(payload["filed_at"])


def after_outcome_filed(session: Session, event: dict) -> None:
    """A filed return: the dissemination's own state, then what its recipient passed on."""
    on_outcome_filed(session, event)
    note_return_status(session, event)
    onward.follow_pass_on(session, current_app.extensions["settings"], event)


def note_return_status(session: Session, event: dict) -> None:
    """The latest return's status (a final one stays final: an amendment after it is final too)."""
    dissemination = session.get(Dissemination, uuid.UUID(event["payload"]["return_id"]))
    if dissemination is not None and dissemination.return_status != "final":
        dissemination.return_status = event["payload"]["status"]


EVENT_HANDLERS = {"outcome.filed": after_outcome_filed}
