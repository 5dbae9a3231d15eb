"""Readiness: can this service do its job right now? ``/readyz`` answers from ``readiness``.

A service is ready when its database and Redis answer, a live RQ worker listens on each queue
its work goes through (its own queue and, when it sends events, the events queue), and the cron
process swept its outbox lately. Each check says ok or what is wrong, in words that name no host
and hold no secret.

- **Live worker**: registered in RQ's worker registry for the queue, no death recorded, and
  either idle with a heartbeat within ``WORKER_TTL`` (an idle worker beats every
  ``WORKER_TTL - 15`` s while it waits for a job) or busy (RQ gives a busy worker's key the
  job's time limit plus a minute, and expires it after). A worker on this host whose process is
  gone is dead at once, whatever its key says (a SIGKILL leaves the key behind).
- **Sweep**: ``sweep_outbox`` records its end in Redis (``record_sweep``); the sweep is stale
  after 3 of its intervals. Counted from the later of the last sweep and this process's start,
  so a fresh start (or a start after a long stop, the key still old) is not refused before the
  cron process has had 3 intervals to sweep; after that, no sweep means not ready. A service
  with no outbox sweep scheduled (it sends no events) has nothing to check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from redis import Redis
from rq import Queue, Worker
from rq.worker import BaseWorker

from shared.queue import WORKER_TTL, process_gone

if TYPE_CHECKING:
    from shared.db import Database
    from shared.service import Service
    from shared.settings import Settings

SWEEP_KEY = "health:sweep:{service}"  # read as is by the metrics exporter: keep the name
STALE_AFTER_INTERVALS = 3


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def record_sweep(redis: Redis, service: str, at: float | None = None) -> None:
    """Note that ``service``'s outbox sweep has just run: unix time, as a float string."""
    redis.set(SWEEP_KEY.format(service=service), repr(time.time() if at is None else at))


def last_sweep(redis: Redis, service: str) -> float | None:
    value = redis.get(SWEEP_KEY.format(service=service))
    return float(value) if value else None


def sweep_interval(service: Service, settings: Settings) -> int | None:
    """Seconds between the service's outbox sweeps, as its cron schedules say; None if it has none."""
    from shared.outbox import sweep_outbox

    intervals = [s.interval_seconds for s in service.schedules(settings) if s.func is sweep_outbox]
    return min(intervals) if intervals else None


def queues_served(service: Service, settings: Settings) -> list[str]:
    """The queues this service's work goes through: its own, and the events queue if it sends events."""
    from shared.outbox import EVENTS_QUEUE

    return [service.name, EVENTS_QUEUE] if settings.subscribers else [service.name]


def worker_is_live(worker: BaseWorker, now: datetime) -> bool:
    # A worker that stopped cleanly has left the registry; one that was killed has not.
    if process_gone(worker.hostname, worker.pid):
        return False
    if worker.get_state() == "busy":
        return True  # RQ expires a busy worker's key at the end of its job's time limit
    beat = worker.last_heartbeat
    return beat is not None and (now - beat.replace(tzinfo=UTC)).total_seconds() <= WORKER_TTL


def _check(name: str, probe: Callable[[], tuple[bool, str]]) -> Check:
    try:
        ok, detail = probe()
    except Exception as error:  # noqa: BLE001 - any failure means not ready; the type says which
        return Check(name, False, f"unavailable: {type(error).__name__}")
    return Check(name, ok, detail)


def readiness(service: Service, settings: Settings, database: Database, redis: Redis, started_at: float) -> list[Check]:
    """Every check of ``service``; it is ready when all are ok."""

    def database_check() -> tuple[bool, str]:
        database.ping()
        return True, "ok"

    def redis_check() -> tuple[bool, str]:
        redis.ping()
        return True, "ok"

    def workers_check() -> tuple[bool, str]:
        now = datetime.now(UTC)
        missing, counts = [], []
        for name in queues_served(service, settings):
            live = [w for w in Worker.all(queue=Queue(name, connection=redis)) if worker_is_live(w, now)]
            counts.append(f"{name}: {len(live)}")
            if not live:
                missing.append(name)
        if missing:
            return False, f"no live worker on {', '.join(missing)} (live workers {', '.join(counts)})"
        return True, f"live workers {', '.join(counts)}"

    def sweep_check() -> tuple[bool, str]:
        interval = sweep_interval(service, settings)
        if interval is None:
            return True, "no outbox sweep scheduled for this service"
        last = last_sweep(redis, service.name)
        limit = STALE_AFTER_INTERVALS * interval
        age = time.time() - max(last or 0.0, started_at)
        said = f"last sweep {time.time() - last:.0f} s ago" if last else "no sweep since this process started"
        if age > limit:
            return False, f"{said}; stale after {limit} s (every {interval} s)"
        return True, f"{said} (every {interval} s)"

    return [
        _check("database", database_check),
        _check("redis", redis_check),
        _check("workers", workers_check),
        _check("sweep", sweep_check),
    ]
