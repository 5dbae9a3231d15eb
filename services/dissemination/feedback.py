"""What the dissemination service learns back from the outcomes service, by event."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

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


EVENT_HANDLERS = {"outcome.filed": on_outcome_filed}
