"""RQ jobs of the dissemination service. They take ids, open their own session, and are
safe to run twice."""

from __future__ import annotations

from services.dissemination import delivery
from shared.service import runtime


def notify_recipient(kind: str, dissemination_id: str) -> str:
    rt = runtime("dissemination")
    with rt.database.job_session() as session:
        return delivery.notify_recipient(session, rt.settings, kind, dissemination_id)


def sweep_notifications(settle_seconds: int = 60) -> int:
    """Re-enqueue notifications whose job was lost (Redis flushed or down when issued)."""
    rt = runtime("dissemination")
    with rt.database.job_session() as session:
        owed = delivery.undelivered_since(session, settle_seconds)
    for kind, dissemination_id in owed:
        delivery.enqueue_notification(rt.settings, kind, dissemination_id)
    return len(owed)
