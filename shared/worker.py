"""The RQ worker for every service's queues and the events queue, with RQ's scheduler (needed
for retries with backoff and ``enqueue_in``). ``python -m services worker [service ...]``.

It rides out its dependencies: while Redis is away it waits (backoff from 0.5 s doubling to
15 s) and logs one line when Redis goes and one when it is back; a job that fails because the
database is away is retried like any failure, and the outage is logged the same way, once. It
exits non-zero only on a real failure: a configuration Redis refuses, or an unexpected error
(RQ's work loop quitting), so that a supervisor restarts it.

RQ's scheduler (moving due retries and ``enqueue_in`` jobs onto their queues) runs as a thread
of this process, not as the child process RQ forks for ``with_scheduler``. A forked child
outlived a SIGKILLed worker, held its pipes open and kept the scheduler lock, and died for
good on a Redis error until the worker's 10-minute maintenance started another; a thread dies
with its process, and rides out Redis like the rest. The lock a dead worker's scheduler held
is taken over once it has gone 10 s without a heartbeat (RQ's own lease lasts 61 s), so a
restarted worker schedules again within seconds. The scheduler's work, a few Redis calls a
second, does not slow the jobs down.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

import redis
from rq import SimpleWorker, worker_registration
from rq.exceptions import StopRequested
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.queue import Queue
from rq.scheduler import RQScheduler
from rq.scripts import release_lock
from rq.worker import WorkerStatus

from shared.logs import configure_logging
from shared.monitoring import start_process_endpoint
from shared.notify import NotificationError
from shared.outages import Outage, describe, is_database_outage, is_redis_outage, retry_through_outage
from shared.outbox import EVENTS_QUEUE, DeliveryFailed
from shared.queue import WORKER_TTL, TracedJob, redis_connection
from shared.service import Service, runtime, service_named

log = logging.getLogger("shared.worker")


def quiet_rq_logs() -> None:
    """RQ logs four or five INFO lines per job (dequeued, OK, result kept, completed): at
    WARNING, a relayed event costs no line unless it fails. Failures and RQ's warnings stay.
    (``rq.worker`` sets its own level to INFO when imported.)"""
    for name in ("rq", "rq.worker"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Worker(SimpleWorker):
    """RQ's SimpleWorker (each job in this process) that waits for Redis instead of quitting.

    RQ retries a lost Redis only while it waits for a job, logging every try; anywhere else (the
    heartbeat after a job, the suspension check, its maintenance) the error ends its work loop.
    Each of those steps is retried here through the outage instead."""

    def __init__(self, *args, redis_outage: Outage, database_outage: Outage, **kwargs):
        super().__init__(*args, **kwargs)
        # RQ's job lines, if turned on again, name a job by its id alone.
        self.log_job_description = False
        self.log_result_lifespan = False
        self.redis_outage = redis_outage
        self.database_outage = database_outage
        self.stop_requested = False
        self.redis_lost = False
        # The wait after a failed dequeue; the waits after that are the heartbeat's (below).
        self.max_connection_wait_time = 15

    def _through_outage(self, action):
        result = retry_through_outage(
            action, self.redis_outage, on_recovery=self._register_again, give_up=self._stopping
        )
        if self.redis_lost:  # noticed by a failed dequeue or job, not by this call
            retry_through_outage(self._register_again, self.redis_outage, give_up=self._stopping)
        return result

    def note_redis_lost(self, error: BaseException) -> None:
        self.redis_outage.failed(error)
        self.redis_lost = True

    def _stopping(self) -> bool:
        if self.stop_requested:
            # RQ's loop treats StopRequested as the end of a warm shutdown.
            raise StopRequested()
        return False

    def _register_again(self) -> None:
        """Redis may have come back empty (restarted without persistence): list this worker
        again, as RQ's registry and the services' readiness checks read it."""
        with self.connection.pipeline() as pipeline:
            pipeline.hset(self.key, mapping=self.serialize())
            worker_registration.register(self, pipeline)
            pipeline.expire(self.key, self.worker_ttl + 60)
            pipeline.execute()
        self.redis_lost = False

    def request_stop(self, signum, frame):
        self.stop_requested = True
        super().request_stop(signum, frame)

    def heartbeat(self, timeout=None, pipeline=None):
        if pipeline is not None:  # part of a job's bookkeeping: fails with it
            return super().heartbeat(timeout, pipeline)
        beat = super().heartbeat
        return self._through_outage(lambda: beat(timeout))

    def check_for_suspension(self, burst: bool):
        check = super().check_for_suspension
        return self._through_outage(lambda: check(burst))

    def run_maintenance_tasks(self):
        return self._through_outage(super().run_maintenance_tasks)

    def execute_job(self, job: Job, queue: Queue):
        try:
            super().execute_job(job, queue)
        except Exception as error:
            if not is_redis_outage(error):
                raise
            # The job's bookkeeping went with Redis. The database holds the truth: the sweeps
            # (and RQ's registry of started jobs) bring back what the job had not finished.
            self.note_redis_lost(error)
            self._state = WorkerStatus.IDLE

    def perform_job(self, job, queue, execution) -> bool:
        done = super().perform_job(job, queue, execution)
        if done:
            self.database_outage.recovered()
        return done

    def handle_exception(self, job: Job, *exc_info):
        error = exc_info[1]
        if error is not None and is_database_outage(error):
            self.database_outage.failed(error)
        elif isinstance(error, DeliveryFailed):
            pass  # the relay logged its one line; RQ retries it
        elif isinstance(error, NotificationError):
            log.warning("job %s (%s) failed: %s", job.id, job.func_name, describe(error))
        else:
            return super().handle_exception(job, *exc_info)
        call_exception_handlers(self._exc_handlers, job, *exc_info)

    def _pubsub_exception_handler(self, exc, pubsub, pubsub_thread):
        # The thread listening for RQ's commands reconnects by itself; the main loop, which hits
        # the same outage at once, is the one that reports it.
        if not is_redis_outage(exc):
            raise exc
        time.sleep(2.0)


class _DequeueRetryFilter(logging.Filter):
    """RQ logs an error for each failed try to dequeue a job. The outage is the worker's to
    report, once; none of these is printed."""

    def __init__(self, worker: Worker):
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if "could not connect to Redis instance" not in str(record.msg):
            return True
        error = record.args[1] if isinstance(record.args, tuple) and len(record.args) > 1 else None
        self.worker.note_redis_lost(error if isinstance(error, BaseException) else ConnectionError(str(error)))
        return False


class SchedulerThread(threading.Thread):
    """RQ's scheduler (``RQScheduler``), run as a thread of the worker: see the module's notes."""

    # A lock holder silent for this long is dead: it refreshes its lock every second.
    STALE_AFTER = 10.0
    # How often to try for the locks it does not hold (another worker's scheduler has them).
    CLAIM_EVERY = 2.0

    def __init__(self, queue_names: Sequence[str], connection: redis.Redis, outage: Outage):
        super().__init__(name="rq-scheduler", daemon=True)
        self.queue_names = set(queue_names)
        # RQ's own lock messages (one per queue) say less than ``_report_locks``.
        self.scheduler = RQScheduler(list(queue_names), connection=connection, logging_level=logging.ERROR)
        self.outage = outage
        self.failure: BaseException | None = None
        self._stop_event = threading.Event()
        self._reported: set[str] = set()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

    def run(self) -> None:
        try:
            self._run()
        except Exception as error:
            # An error nobody expected: the worker must not run on without its scheduler.
            log.exception("scheduler thread failed")
            self.failure = error
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            try:
                self.scheduler.release_locks()
                self.scheduler.register_death()
            except redis.exceptions.RedisError:
                pass  # the locks lapse on their own (61 s)

    def _run(self) -> None:
        last_claim = 0.0
        born = False
        while not self._stop_event.is_set():
            try:
                if not born:
                    self.scheduler.register_birth()
                    born = True
                missing = self.queue_names - self.scheduler.acquired_locks
                if missing and time.monotonic() - last_claim > self.CLAIM_EVERY:
                    last_claim = time.monotonic()
                    self._claim_locks()
                if self.scheduler.acquired_locks:
                    self.scheduler.heartbeat()  # also drops a lock another scheduler took over
                    self.scheduler.enqueue_scheduled_jobs()
                self._report_locks()
                self.outage.recovered()
                self._stop_event.wait(self.scheduler.interval)
            except Exception as error:
                if not is_redis_outage(error):
                    raise
                self.outage.failed(error)
                born = False  # Redis may come back empty
                self._stop_event.wait(self.CLAIM_EVERY)

    def _claim_locks(self) -> None:
        """Take over the lock of each queue whose holder stopped refreshing it, then take every
        free lock. RQ sets a lock's lease to interval + 60 s at each refresh, so the lease left
        tells how long ago its holder was last heard of."""
        connection = self.scheduler.connection
        lease = self.scheduler.interval + 60
        taken_over = []
        for name in sorted(self.queue_names - self.scheduler.acquired_locks):
            key = RQScheduler.get_locking_key(name)
            holder = connection.get(key)
            if holder is None or holder.decode() == self.scheduler.name:
                continue
            left = connection.ttl(key)
            if 0 <= left < lease - self.STALE_AFTER and release_lock(connection, key, holder.decode()):
                taken_over.append(name)
        if taken_over:
            log.warning("scheduler locks of %s taken over from a scheduler gone silent", ", ".join(taken_over))
        self.scheduler.acquire_locks()

    def _report_locks(self) -> None:
        held = set(self.scheduler.acquired_locks)
        if held != self._reported:
            self._reported = held
            if held:
                log.info("scheduler: moving due jobs of %s", ", ".join(sorted(held)))
            else:
                log.info("scheduler: standing by (another worker's scheduler holds the locks)")


def main(services: Sequence[Service], argv: list[str] | None = None) -> None:
    """Work the queues of ``services``, or of those named on the command line, then the events."""
    parser = argparse.ArgumentParser(
        prog="python -m services worker", description="Run an RQ worker for the services' queues."
    )
    parser.add_argument("services", nargs="*", help="service names (default: every service)")
    parser.add_argument("--burst", action="store_true", help="stop when the queues are empty")
    args = parser.parse_args(argv)
    configure_logging("worker")
    quiet_rq_logs()
    chosen = [service_named(name) for name in args.services] if args.services else list(services)
    # Each runtime (settings, engine) is built now rather than by the first job; the services'
    # job modules came with their declarations.
    runtimes = [runtime(service.name) for service in chosen]
    queue_names = [*(service.name for service in chosen), EVENTS_QUEUE]
    connection = redis_connection(runtimes[0].settings.redis_url)
    redis_outage = Outage("redis", log)
    start_process_endpoint("worker", runtimes[0].settings, runtimes[0].settings.worker_metrics_port)
    database_outage = Outage("database", log)

    # Until RQ's handlers are in place, a stop request while Redis is still away ends here.
    def stop_now(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop_now)
    signal.signal(signal.SIGINT, stop_now)
    # SimpleWorker runs each job in this process: measured here, a relay took ~17 ms in-process
    # against ~270 ms in a forked child, and bursts of events (seeding the directory, a rebuild)
    # otherwise delay every notification behind them. Scale out with more worker processes.
    worker = retry_through_outage(
        lambda: Worker(
            queue_names,
            connection=connection,
            redis_outage=redis_outage,
            database_outage=database_outage,
            worker_ttl=WORKER_TTL,  # heartbeats often enough for /readyz to see a dead worker soon
            job_class=TracedJob,  # each job logs under the request id it was enqueued with
        ),
        redis_outage,
    )
    logging.getLogger("rq.worker").addFilter(_DequeueRetryFilter(worker))
    scheduler = None if args.burst else SchedulerThread(queue_names, connection, redis_outage)
    log.info("listening on %s%s", ", ".join(queue_names), "" if args.burst else ", with the scheduler")
    if scheduler:
        scheduler.start()
    try:
        # In burst mode RQ moves the due scheduled jobs once, in this process, before working.
        worker.work(burst=args.burst, with_scheduler=args.burst)
    except Exception as error:
        # Asked to stop while Redis was away: RQ could not sign the worker off. Its entry
        # lapses by itself (worker_ttl); nothing failed.
        if not (worker.stop_requested and is_redis_outage(error)):
            raise
    finally:
        if scheduler:
            scheduler.stop()
    if scheduler and scheduler.failure:
        sys.exit("worker: the scheduler thread failed (logged above)")
    if not (worker.stop_requested or args.burst):
        sys.exit("worker: RQ's work loop quit on an error (logged above)")
