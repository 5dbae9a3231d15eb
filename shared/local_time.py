"""Dates and times as people in the UK read them (Europe/London, summer time included)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    LOCAL_TIME: ZoneInfo | None = ZoneInfo("Europe/London")
except ZoneInfoNotFoundError:  # pragma: no cover - no time-zone database installed
    LOCAL_TIME = None


def local(moment: datetime) -> datetime:
    """``moment`` in UK local time (a naive time is taken to be UTC, as the databases keep it)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(LOCAL_TIME) if LOCAL_TIME else moment


def date_words(moment: datetime | None) -> str:
    """``1 December 2026``."""
    if moment is None:
        return ""
    at = local(moment)
    return f"{at.day} {at:%B %Y}"


def date_time_words(moment: datetime | None, *, zone: bool = False) -> str:
    """``1 December 2026 at 2:05pm``; with ``zone``, ``... at 2:05pm GMT`` (BST in summer), as an
    e-mail read anywhere says it."""
    if moment is None:
        return ""
    at = local(moment)
    hour = at.hour % 12 or 12
    words = f"{at.day} {at:%B %Y} at {hour}:{at:%M}{'am' if at.hour < 12 else 'pm'}"
    return f"{words} {at.tzname()}" if zone else words
