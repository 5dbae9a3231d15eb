"""Every periodic job of the outcomes service, in one list (read by ``shared.cron``)."""

from __future__ import annotations

from shared.cron import Schedule
from shared.settings import load_settings


def schedules() -> list[Schedule]:
    settings = load_settings("outcomes")
    return [
        Schedule("services.outcomes.jobs.sweep_chases", (), settings.chase_sweep_seconds),
        Schedule("shared.events.sweep_outbox", ("outcomes",), settings.outbox_sweep_seconds),
    ]
