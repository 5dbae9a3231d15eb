"""RQ jobs of the outcomes service. They take ids, open their own session, and are safe to
run twice."""

from __future__ import annotations

from services.outcomes import chasing
from shared.service import runtime


def sweep_chases() -> dict:
    rt = runtime("outcomes")
    with rt.database.job_session() as session:
        counts = chasing.sweep(session, rt.settings)
    # A step claimed a couple of sweeps ago and still pending has likely lost its job (Redis
    # flushed or down). Re-enqueueing one whose job is only queued behind others is harmless:
    # the deterministic job id is not enqueued twice.
    with rt.database.job_session() as session:
        counts["requeued"] = chasing.requeue_lost_sends(
            session, rt.settings, older_than_seconds=max(5, 2 * rt.settings.chase_sweep_seconds)
        )
    return counts


def send_chase(entry_id: int) -> str:
    rt = runtime("outcomes")
    with rt.database.job_session() as session:
        return chasing.send_chase(session, rt.settings, entry_id)
