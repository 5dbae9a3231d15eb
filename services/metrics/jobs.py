"""Jobs of the metrics service."""

from __future__ import annotations

from services.metrics import rebuilding
from shared.inbox import fetch_event_log
from shared.service import runtime


def rebuild_read_model() -> int:
    """Replay every event the other services keep into an empty read model."""
    rt = runtime("metrics")
    with rt.database.job_session() as session:
        return rebuilding.rebuild(
            session, lambda source, after, limit: fetch_event_log(rt.settings, source, after, limit)
        )
