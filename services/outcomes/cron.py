"""Every periodic job of the outcomes service, in one list (its ``SERVICE.schedules``)."""

from __future__ import annotations

from services.outcomes import jobs
from shared.cron import Schedule
from shared.outbox import sweep_outbox
from shared.settings import Settings


def schedules(settings: Settings) -> list[Schedule]:
    return [
        Schedule(jobs.sweep_chases, (), settings.chase_sweep_seconds),
        Schedule(sweep_outbox, (settings.service,), settings.outbox_sweep_seconds),
    ]
