"""What the dissemination service learns back from the outcomes service, by event."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from services.dissemination.models import Dissemination


def on_outcome_filed(session: Session, event: dict) -> None:
    """Any filed return (interim or final) counts as acknowledgement and sets the return status
    the recipient's inbox shows; a final one marks the dissemination returned (the first counts)."""
    payload = event["payload"]
    dissemination = session.get(Dissemination, uuid.UUID(payload["return_id"]))
    if dissemination is None:
        return
    filed_at = datetime.fromisoformat(payload["filed_at"])
    record_return(dissemination, payload.get("status"), filed_at, payload.get("filed_by"))
    if payload.get("status") == "final" and dissemination.returned_at is None:
        dissemination.returned_at = filed_at


def record_return(dissemination: Dissemination, status: str | None, filed_at: datetime, filed_by: str | None) -> None:
    """Filing counts as acknowledgement. Once final, a later interim amendment does not make the
    inbox show the return as interim again (events may also arrive out of order)."""
    if dissemination.acknowledged_at is None:
        dissemination.acknowledged_at = filed_at
        dissemination.acknowledged_by = (filed_by or "outcome return filed")[:200]
    if status in ("interim", "final") and dissemination.return_status != "final":
        dissemination.return_status = status


EVENT_HANDLERS = {"outcome.filed": on_outcome_filed}
