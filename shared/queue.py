"""Redis connections and RQ queues. Redis only carries work; the database is the truth.

RQ's Redis client must not use ``decode_responses=True`` (jobs stay queued otherwise).

**Jobs whose worker died.** A worker killed mid-job (SIGKILL, a lost machine) leaves its job
``started`` in RQ's ``StartedJobRegistry`` until RQ's maintenance, every 10 minutes, finds the
registry entry expired; meanwhile ``enqueue`` would skip the job's deterministic id as active and
the work would wait. So ``enqueue`` asks whether a started job is **abandoned**, and if so clears
what the dead worker left (its entry in the started registry, the job) and enqueues it anew at
once. A started job is abandoned when:

- its worker is gone from RQ's registry (its key expired, or it recorded its death), or
- its worker ran on this host and that process no longer exists (what a SIGKILL leaves, seen at
  once by the next sweep on the same machine), or
- its heartbeat is older than its time limit plus ``ABANDON_GRACE``: RQ sets the job's
  heartbeat when it starts it and stops any job at its time limit (``SimpleWorker`` sends no
  heartbeat while a job runs), so no worker anywhere can still be running it.

Chosen over a lease column on each row because RQ already records who runs what and since when,
and because the rows keep their own guard: every job locks the row it acts on and does nothing to
a row already done, so the rare job judged abandoned while its worker is merely slow runs twice
and changes nothing twice.

A job enqueued while a request id is bound (a request, another job, an event being applied)
carries it in ``job.meta``; ``TracedJob``, the job class the worker runs, binds it again (with
the job's id) for every line the job logs and every event or job it makes in turn.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from redis import Redis
from rq import Queue, Retry, Worker, get_current_job
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.types import FunctionReferenceType

from shared.logs import current_request_id, job_context

log = logging.getLogger(__name__)

JOB_DEFAULTS = {"job_timeout": 120, "result_ttl": 3600, "failure_ttl": 7 * 24 * 3600}
ACTIVE_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
# The worker's heartbeat period is a little under this while it waits for jobs; readiness counts a
# worker as live while its last heartbeat is within it. RQ's default (420 s) would let a dead
# worker look alive for 7 minutes.
WORKER_TTL = 60
ABANDON_GRACE = 10  # seconds past a job's time limit before a silent started job is given up


@lru_cache(maxsize=8)
@lru_cache(maxsize=16)
def redis_connection(url: str) -> Redis:
    """One client, and its pool of connections, per URL and process: a request or a job that
    speaks to Redis reuses a connection instead of opening one (a dropped one is opened again)."""
    return Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=30)


def queue(redis_url: str, name: str) -> Queue:
    return Queue(name, connection=redis_connection(redis_url))


def process_gone(hostname: str | None, pid: int | None) -> bool:
    """Whether a worker that ran on this host as ``pid`` has no process any more. A worker on
    another host is never judged here (its heartbeat is)."""
    if not pid or hostname != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, as another user
    return False


def abandoned(connection: Redis, job: Job, now: datetime | None = None) -> str | None:
    """Why no worker will finish this started job, or None while one may."""
    if job.get_status(refresh=False) != JobStatus.STARTED:
        return None
    now = now or datetime.now(UTC)
    worker = None
    if job.worker_name:
        worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + job.worker_name, connection=connection)
    if worker is None or connection.hexists(worker.key, "death"):
        return f"its worker {job.worker_name or '(none)'} is gone"
    if process_gone(worker.hostname, worker.pid):
        return f"the process of its worker {worker.name} is gone"
    limit = (job.timeout or JOB_DEFAULTS["job_timeout"]) + ABANDON_GRACE
    beat = job.last_heartbeat or job.started_at
    if beat is not None and now - beat.replace(tzinfo=UTC) > timedelta(seconds=limit):
        return f"no heartbeat for over {limit} s, past its time limit"
    return None


def clear_abandoned(connection: Redis, job: Job) -> None:
    """Remove what a dead worker left of ``job``: its started-registry entries and the job itself,
    so the same id can be enqueued afresh and RQ's maintenance never fails the new one."""
    registry = StartedJobRegistry(job.origin, connection=connection)
    stale = [
        Execution(execution_id, job_id, connection)
        for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False)
        if job_id == job.id
    ]
    with connection.pipeline() as pipeline:
        for execution in stale:
            pipeline.zrem(registry.key, execution.composite_key)
            pipeline.delete(execution.key)
        pipeline.delete(job.key, job.execution_registry.key)
        pipeline.execute()


def job_statuses(connection: Redis, job_ids: list[str]) -> list[str | None]:
    """Each job's status as RQ stored it (None: no such job), in one round trip."""
    with connection.pipeline(transaction=False) as pipeline:
        for job_id in job_ids:
            pipeline.hget(Job.key_for(job_id), "status")
        return [value.decode() if value else None for value in pipeline.execute()]


def job_is_active(redis_url: str, job_id: str) -> bool:
    """Whether the job is queued, scheduled or running; a job its dead worker abandoned is
    cleared here and counts as not active."""
    connection = redis_connection(redis_url)
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status == JobStatus.STARTED:
        reason = abandoned(connection, job)
        if reason:
            log.warning("job %s was abandoned (%s): enqueued again", job_id, reason)
            clear_abandoned(connection, job)
            return False
    return status in ACTIVE_STATUSES


def enqueue_new(
    redis_url: str,
    queue_name: str,
    func: FunctionReferenceType,
    calls: list[tuple[tuple, str]],
    *,
    retry: Retry | None = None,
) -> int:
    """Enqueue ``func(*args)`` for each ``(args, job_id)`` in one round trip to Redis. Only for
    ids no job has had yet (rows just committed), so nothing is asked of Redis first."""
    if not calls:
        return 0
    request_id = current_request_id()
    jobs = queue(redis_url, queue_name)
    data = [
        Queue.prepare_data(
            func,
            args=args,
            job_id=job_id,
            retry=retry,
            timeout=JOB_DEFAULTS["job_timeout"],
            result_ttl=JOB_DEFAULTS["result_ttl"],
            failure_ttl=JOB_DEFAULTS["failure_ttl"],
            meta={"request_id": request_id} if request_id else None,
        )
        for args, job_id in calls
    ]
    with jobs.connection.pipeline() as pipeline:
        jobs.enqueue_many(data, pipeline=pipeline)
        pipeline.execute()
    return len(data)


def enqueue(
    redis_url: str,
    queue_name: str,
    func: FunctionReferenceType,
    *args: Any,
    job_id: str | None = None,
    retry: Retry | None = None,
    skip_if_active: bool = True,
    job_timeout: int | None = None,
    **kwargs: Any,
) -> Job | None:
    """Enqueue ``func(*args, **kwargs)``; a deterministic ``job_id`` that is already queued,
    scheduled or running is not enqueued twice."""
    if job_id and skip_if_active and job_is_active(redis_url, job_id):
        return None
    options = {**JOB_DEFAULTS, **({"job_timeout": job_timeout} if job_timeout else {})}
    request_id = current_request_id()
    return queue(redis_url, queue_name).enqueue(
        func,
        args=args,
        kwargs=kwargs or None,
        job_id=job_id,
        retry=retry,
        meta={"request_id": request_id} if request_id else None,
        **options,
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
