"""Every periodic job of the dissemination service, in one list (its ``SERVICE.schedules``)."""

from __future__ import annotations

from services.dissemination import jobs
from shared.cron import Schedule
from shared.outbox import sweep_outbox
from shared.settings import Settings


def schedules(settings: Settings) -> list[Schedule]:
    return [
        Schedule(sweep_outbox, (settings.service,), settings.outbox_sweep_seconds),
        Schedule(jobs.sweep_notifications, (settings.notify_sweep_seconds,), settings.notify_sweep_seconds),
    ]
