"""The three services: dissemination, outcomes, metrics. Each is readable from its folder alone.

This is the registry: the one list of services, which ``shared`` is handed (it names none).
The processes that run them all start here: ``python -m services worker|cron|migrate``.
"""

from __future__ import annotations

from services import dissemination, metrics, outcomes
from shared.service import Service, settings_for, use_services

SERVICES: tuple[Service, ...] = (dissemination.SERVICE, outcomes.SERVICE, metrics.SERVICE)
use_services(SERVICES)

__all__ = ["SERVICES", "settings_for"]
