"""What the outcomes service learns from the dissemination service, by event. Each handler
runs once per event id (the inbox) and is written so that replaying it changes nothing."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from services.outcomes.models import ChaseEntry, ExpectedReturn, Organisation
from shared.db import utcnow


def on_organisation_updated(session: Session, event: dict) -> None:
    payload = event["payload"]
    organisation = session.get(Organisation, payload["code"]) or Organisation(code=payload["code"])
    # The webhook secret comes sealed (only services holding WEBHOOK_SECRETS_KEY can open it)
    # and is kept so; events from before per-organisation secrets have none.
    for name in ("name", "region", "email", "webhook_url", "webhook_secret_sealed", "escalation_email", "active"):
        setattr(organisation, name, payload.get(name))
    session.add(organisation)


def on_package_issued(session: Session, event: dict) -> None:
    """One expected return per dissemination, with the dissemination's id and due date. A
    package passed on by a recipient comes the same way, with only the onward dissemination,
    its ``onward_from`` and depth, and when it was passed on as its ``issued_at``."""
    payload = event["payload"]
    for dissemination in payload["disseminations"]:
        return_id = uuid.UUID(dissemination["dissemination_id"])
        if session.get(ExpectedReturn, return_id) is not None:
            continue
        session.add(
            ExpectedReturn(
                id=return_id,
                package_id=uuid.UUID(payload["package_id"]),
                reference=payload["reference"],
                title=payload["title"],
                threat_area=payload["threat_area"],
                classification=payload["classification"],
                organisation=dissemination["organisation"],
                issued_at=datetime.fromisoformat(dissemination.get("issued_at") or payload["issued_at"]),
                due_at=datetime.fromisoformat(dissemination["due_at"]),
                extensions=[],
                onward_from=uuid.UUID(dissemination["onward_from"]) if dissemination.get("onward_from") else None,
                onward_depth=dissemination.get("onward_depth") or 0,
            )
        )


def on_package_withdrawn(session: Session, event: dict) -> None:
    """A withdrawn package owes no return: close its returns and cancel pending chases."""
    close_withdrawn(session, [uuid.UUID(i) for i in event["payload"]["dissemination_ids"]], "package withdrawn")


def on_dissemination_withdrawn(session: Session, event: dict) -> None:
    """One dissemination withdrawn on its own (its pass-on amended away): the same."""
    close_withdrawn(session, [uuid.UUID(event["payload"]["dissemination_id"])], "pass-on withdrawn")


def close_withdrawn(session: Session, ids: list[uuid.UUID], why: str) -> None:
    for expected in session.query(ExpectedReturn).filter(ExpectedReturn.id.in_(ids)):
        if expected.closed_at is None:
            expected.closed_at = utcnow()
            expected.close_reason = "withdrawn"
    session.execute(
        update(ChaseEntry)
        .where(ChaseEntry.return_id.in_(ids), ChaseEntry.result == "pending")
        .values(result="cancelled", error=why)
    )


def on_dissemination_acknowledged(session: Session, event: dict) -> None:
    payload = event["payload"]
    expected = session.get(ExpectedReturn, uuid.UUID(payload["dissemination_id"]))
    if expected is not None and expected.acknowledged_at is None:
        expected.acknowledged_at = datetime.fromisoformat(payload["acknowledged_at"])


EVENT_HANDLERS = {
    "organisation.updated": on_organisation_updated,
    "package.issued": on_package_issued,
    "package.withdrawn": on_package_withdrawn,
    "dissemination.withdrawn": on_dissemination_withdrawn,
    "dissemination.acknowledged": on_dissemination_acknowledged,
}
