"""Riding out an outage of a dependency (Redis, the database) in a long-running process.

The worker and the cron process keep running while Redis or the database is away: they retry
with capped exponential backoff and report the outage once when it starts and once when it
ends, not on every try (a minute of outage would otherwise print a line every second or two).
They still fail, and exit non-zero, on what waiting cannot mend: a password Redis refuses, or an
error nobody expected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import redis
from sqlalchemy import exc as sa_exc

FIRST_DELAY = 0.5
MAX_DELAY = 15.0

T = TypeVar("T")


def backoff(first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> Iterator[float]:
    """Seconds to wait before each retry: 0.5, 1, 2, 4, 8, 15, 15, ..."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, cap)


def is_redis_outage(error: BaseException) -> bool:
    """Redis cannot be reached (or is still loading): worth waiting for. A refused password or
    ACL (subclasses of ConnectionError in redis-py) is a configuration error, not an outage."""
    if isinstance(error, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
        return False
    return isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError)


def is_database_outage(error: BaseException) -> bool:
    """The database went away or dropped the connection (restarted, backends terminated)."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)


def describe(error: BaseException) -> str:
    """The first line of the driver's own message: SQLAlchemy's adds the statement and its
    parameters, which may hold personal data and do not belong in an outage line."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines() or [type(original).__name__]
    return lines[0][:200]


class Outage:
    """One dependency as this process sees it. ``failed`` logs when an outage starts and
    ``recovered`` when it ends; the tries in between say nothing. Thread-safe: the worker's
    scheduler thread and its main thread share one."""

    def __init__(self, dependency: str, log: logging.Logger):
        self.dependency = dependency
        self.log = log
        self._since: float | None = None
        self._lock = threading.Lock()

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, error: BaseException) -> None:
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        self.log.warning("%s unreachable (%s), retrying", self.dependency, describe(error))

    def recovered(self) -> None:
        with self._lock:
            if self._since is None:
                return
            lasted = time.monotonic() - self._since
            self._since = None
        self.log.warning("%s back after %.1f s", self.dependency, lasted)


def retry_through_outage(
    action: Callable[[], T],
    outage: Outage,
    *,
    is_outage: Callable[[BaseException], bool] = is_redis_outage,
    on_recovery: Callable[[], object] | None = None,
    give_up: Callable[[], bool] = lambda: False,
) -> T:
    """``action()``, tried again with backoff for as long as the dependency is away. After a
    failure here, ``on_recovery`` runs once the action works again (a Redis that came back empty
    needs the worker registered again, whoever noticed the recovery first). ``give_up`` is asked
    before each wait: a process asked to stop does not wait for Redis."""
    delays = backoff()
    failed_here = False
    while True:
        try:
            result = action()
            if failed_here and on_recovery is not None:
                on_recovery()
        except Exception as error:
            if not is_outage(error) or give_up():
                raise
            outage.failed(error)
            failed_here = True
            time.sleep(next(delays))
        else:
            outage.recovered()
            return result
