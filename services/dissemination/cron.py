"""Every periodic job of the dissemination service, in one list (read by ``shared.cron``)."""

from __future__ import annotations

from shared.cron import Schedule
from shared.settings import load_settings


def schedules() -> list[Schedule]:
    settings = load_settings("dissemination")
    return [
        Schedule("shared.events.sweep_outbox", ("dissemination",), settings.outbox_sweep_seconds),
        Schedule("services.dissemination.jobs.sweep_notifications", (), 60),
    ]
