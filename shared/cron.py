"""One RQ cron process for every service's periodic jobs.

RQ's ``CronScheduler`` has no lock between instances, so run exactly one (``make run`` and
compose do); every periodic job is idempotent anyway. Each service declares its schedules
(``Service.schedules``, written in ``services/<name>/cron.py``); ``python -m services cron``
starts this process with the registry.

RQ's own loop (``CronScheduler.start``) dies on the first Redis error; ``run`` is that loop,
riding out a Redis outage (backoff from 0.5 s to 15 s, one line when Redis goes, one when it is
back) and enqueueing what fell due meanwhile as soon as Redis answers. It needs no database.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis
from rq.cron import CronScheduler
from rq.exceptions import SchedulerNotFound, StopRequested

from shared.logs import configure_logging
from shared.monitoring import start_process_endpoint
from shared.outages import Outage, retry_through_outage
from shared.queue import redis_connection
from shared.service import Service, service_named, settings_for

log = logging.getLogger("shared.cron")


@dataclass(frozen=True)
class Schedule:
    func: Callable
    args: tuple
    interval_seconds: int
    queue: str | None = None


def build_scheduler(services: Sequence[Service]) -> CronScheduler:
    """A scheduler with every schedule of ``services``. A service whose schedules cannot be
    read stops it here: a cron process that schedules nothing must not look healthy."""
    settings = {service.name: settings_for(service.name) for service in services}
    connection = redis_connection(settings[services[0].name].redis_url)
    scheduler = CronScheduler(connection=connection, name=f"cron:{','.join(settings)}")
    for service in services:
        for schedule in service.schedules(settings[service.name]):
            scheduler.register(
                schedule.func,
                queue_name=schedule.queue or service.name,
                args=schedule.args,
                interval=schedule.interval_seconds,
                job_timeout=300,
            )
    return scheduler


def main(services: Sequence[Service], argv: list[str] | None = None) -> None:
    """Schedule the periodic jobs of ``services``, or of those named on the command line."""
    parser = argparse.ArgumentParser(prog="python -m services cron", description="Run the services' periodic jobs.")
    parser.add_argument("services", nargs="*", help="service names (default: every service)")
    args = parser.parse_args(argv)
    configure_logging("cron")
    # RQ logs a line per enqueued job and per registration: the summary below says it once.
    logging.getLogger("rq").setLevel(logging.WARNING)
    chosen = [service_named(name) for name in args.services] if args.services else list(services)
    settings = settings_for(chosen[0].name)
    start_process_endpoint("cron", settings, settings.cron_metrics_port)
    run(build_scheduler(chosen))


def run(scheduler: CronScheduler) -> None:
    """Enqueue each periodic job when due until SIGTERM or SIGINT."""

    def stop(signum, frame):
        raise StopRequested()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    outage = Outage("redis", log)

    def tick() -> None:
        if scheduler.enqueue_jobs():
            scheduler.save()  # the jobs' last and next run times, for RQ's dashboards
        # Also lists this process again, and rewrites its entry, after Redis came back empty.
        scheduler.heartbeat()

    log.info(
        "scheduling %s",
        "; ".join(f"{job.func_name} on {job.queue_name} every {job.interval} s" for job in scheduler.get_jobs()),
    )
    try:
        retry_through_outage(scheduler.register_birth, outage)
        while True:
            retry_through_outage(tick, outage)
            time.sleep(scheduler.calculate_sleep_interval())
    except StopRequested:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut this short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            scheduler.register_death()
        except (redis.exceptions.RedisError, SchedulerNotFound):
            pass  # Redis away or emptied: its entry lapses by itself
