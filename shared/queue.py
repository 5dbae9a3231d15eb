"""Redis connections and RQ queues. Redis only carries work; the database is the truth.

RQ's Redis client must not use ``decode_responses=True`` (jobs stay queued otherwise).

A job enqueued while a request id is bound (a request, another job, an event being applied)
carries it in ``job.meta``; ``TracedJob``, the job class the worker runs, binds it again (with
the job's id) for every line the job logs and every event or job it makes in turn.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from redis import Redis
from rq import Queue, Retry, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.types import FunctionReferenceType

from shared.logs import current_request_id, job_context

log = logging.getLogger(__name__)

JOB_DEFAULTS = {"job_timeout": 120, "result_ttl": 3600, "failure_ttl": 7 * 24 * 3600}
ACTIVE_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


@lru_cache(maxsize=8)
def redis_connection(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=30)


def queue(redis_url: str, name: str) -> Queue:
    return Queue(name, connection=redis_connection(redis_url))


def job_is_active(redis_url: str, job_id: str) -> bool:
    try:
        job = Job.fetch(job_id, connection=redis_connection(redis_url))
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in ACTIVE_STATUSES


def enqueue(
    redis_url: str,
    queue_name: str,
    func: FunctionReferenceType,
    *args: Any,
    job_id: str | None = None,
    retry: Retry | None = None,
    skip_if_active: bool = True,
    **kwargs: Any,
) -> Job | None:
    """Enqueue ``func(*args, **kwargs)``; a deterministic ``job_id`` that is already queued,
    scheduled or running is not enqueued twice."""
    if job_id and skip_if_active and job_is_active(redis_url, job_id):
        return None
    request_id = current_request_id()
    return queue(redis_url, queue_name).enqueue(
        func,
        args=args,
        kwargs=kwargs or None,
        job_id=job_id,
        retry=retry,
        meta={"request_id": request_id} if request_id else None,
        **JOB_DEFAULTS,
    )


class TracedJob(Job):
    """A job that logs under the request id it was enqueued with, and its own id."""

    def perform(self) -> Any:
        with job_context(request_id=self.meta.get("request_id"), job_id=self.id, queue=self.origin):
            return super().perform()


def retry(intervals: tuple[int, ...]) -> Retry:
    """RQ's retries with these seconds between tries (from ``Settings``)."""
    return Retry(max=len(intervals), interval=list(intervals))


def is_final_try() -> bool:
    """Whether the running job has no retry left (a call outside a job is its own last try)."""
    job = get_current_job()
    return job is None or not job.retries_left
