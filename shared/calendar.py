"""Working days: weekends and UK bank holidays skipped, from the maintained ``holidays``
package. Bank holidays differ across the UK, so the recipient's region picks the calendar."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache

import holidays

REGION_SUBDIVISIONS = {"Scotland": "SCT", "Northern Ireland": "NIR", "Wales": "WLS"}


def subdivision_for(region: str | None) -> str:
    return REGION_SUBDIVISIONS.get(region or "", "ENG")


@lru_cache(maxsize=16)
def _calendar(subdivision: str, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("GB", subdiv=subdivision, years=[year, year + 1])


def is_working_day(day: date, subdivision: str = "ENG") -> bool:
    return day.weekday() < 5 and day not in _calendar(subdivision, day.year)


def add_working_days(start: datetime, days: int, region: str | None = None) -> datetime:
    """``start`` moved forward by ``days`` working days, keeping its time of day."""
    if days < 1:
        raise ValueError("days must be at least 1")
    subdivision = subdivision_for(region)
    moment = start
    remaining = days
    while remaining:
        moment += timedelta(days=1)
        if is_working_day(moment.date(), subdivision):
            remaining -= 1
    return moment
