"""Dates and times as people in the UK read them (Europe/London, summer time included)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    LOCAL_TIME: ZoneInfo | None = ZoneInfo("Europe/London")
except ZoneInfoNotFoundError:  # pragma: no cover - no time-zone database installed
    LOCAL_TIME = None


def local(moment: datetime) -> datetime:
    return moment.astimezone(LOCAL_TIME) if LOCAL_TIME else moment


def date_words(moment: datetime | None) -> str:
    """``1 December 2026``."""
    if moment is None:
        return ""
    at = local(moment)
    return f"{at.day} {at:%B %Y}"


def date_time_words(moment: datetime | None) -> str:
    """``1 December 2026 at 2:05pm``."""
    if moment is None:
        return ""
    at = local(moment)
    hour = at.hour % 12 or 12
    return f"{at.day} {at:%B %Y} at {hour}:{at:%M}{'am' if at.hour < 12 else 'pm'}"
